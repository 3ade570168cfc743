"""Ingest: a folder's files through the pipeline (reader -> mapper -> sink) into the store, in threads,
worker processes or on Ray."""

from audiosim.engine.ingest.indexer import IngestReport, index_folder
from audiosim.engine.ingest.options import IndexOptions
from audiosim.engine.ingest.pipeline import run_pipeline

__all__ = ["IndexOptions", "IngestReport", "index_folder", "run_pipeline"]
