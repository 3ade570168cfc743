"""The API's routers, one module per resource: collections, search, items, jobs, system (page, health, metrics)."""
