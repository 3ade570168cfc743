"""``audiosim serve``: a search service over audiosim collections, with a REST API and a web page.

Install with ``pip install 'audiosim[serve]'`` (FastAPI, uvicorn, python-multipart,
prometheus-client). :func:`create_app` builds the ASGI app from a :class:`ServeConfig`; the
``serve`` command runs it under uvicorn. Importing this package imports no web framework:
FastAPI is imported by :func:`create_app`.

Modules: ``config`` (options and their checks), ``catalog`` (a warm searcher per collection),
``workers`` (the bounded inference pool), ``media`` (item audio and spectrograms), ``ranges``
(HTTP Range), ``security`` (token, upload limit, --root), ``jobs`` (background index jobs),
``metrics`` (Prometheus), ``schemas`` (request/response models), ``routes/`` (one router per
resource), ``app`` (assembly), ``static/`` (the page: plain HTML, JS and CSS, no build step).
"""

from audiosim.service.app import create_app
from audiosim.service.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
