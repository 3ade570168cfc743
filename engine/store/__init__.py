"""The collection on disk: ``collection.json`` (the manifest) over immutable Parquet parts, the writer
lock, labels, the saved vector index, compaction, and check/repair. Only this package reads or writes
a collection's files."""

from audiosim.engine.store.compaction import CompactionReport, compact_collection
from audiosim.engine.store.indexing import ensure_index, load_for_search
from audiosim.engine.store.integrity import CheckReport, RepairReport, check_collection, repair_collection
from audiosim.engine.store.manifest import Manifest
from audiosim.engine.store.store import CollectionStore, CollectionWriter, Rows

__all__ = ["CheckReport", "CollectionStore", "CollectionWriter", "CompactionReport", "Manifest", "RepairReport", "Rows",
           "check_collection", "compact_collection", "ensure_index", "load_for_search", "repair_collection"]
