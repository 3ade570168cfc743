"""Search: the library API (:func:`open_collection`), the searcher, region grouping and excerpt location."""

from audiosim.engine.search.library import Collection, open_collection
from audiosim.engine.search.query import Filters, Query, SearchResult
from audiosim.engine.search.regions import Region
from audiosim.engine.search.searcher import Hit, Item, Searcher, Timing

__all__ = ["Collection", "Filters", "Hit", "Item", "Query", "Region", "SearchResult", "Searcher", "Timing",
           "open_collection"]
