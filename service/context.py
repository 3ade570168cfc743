"""Shared state of one app and the FastAPI dependencies that hand it to the routes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from audiosim.service.catalog import Catalog
from audiosim.service.config import ServeConfig
from audiosim.service.jobs import JobRegistry
from audiosim.service.media import LruBytes
from audiosim.service.metrics import ServiceMetrics
from audiosim.service.workers import InferencePool


@dataclass(frozen=True)
class ServiceContext:
    """Everything a request handler may use; built once by :func:`audiosim.service.app.create_app`."""

    config: ServeConfig
    catalog: Catalog
    pool: InferencePool
    jobs: JobRegistry
    wav_cache: LruBytes
    spectrogram_cache: LruBytes
    metrics: ServiceMetrics
    started: float = field(default_factory=time.time)

    def close(self) -> None:
        self.pool.close()
        self.jobs.close()


def base_path(request) -> str:
    """The URL prefix the app is mounted at (``--root-path`` behind a reverse proxy), without a trailing slash."""
    return (request.scope.get("root_path") or "").rstrip("/")


def item_urls(request, collection: str, item_id: int, *, start_s: float | None = None,
              end_s: float | None = None) -> dict[str, str]:
    """The item's URLs; with ``start_s``/``end_s`` (a region) its audio and picture cover that span of its file."""
    item = f"{base_path(request)}/api/collections/{collection}/items/{item_id}"
    span = "" if end_s is None else f"?start={round(float(start_s or 0.0), 3)!r}&end={round(float(end_s), 3)!r}"
    return {"item_url": item, "audio_url": f"{item}/audio{span}", "spectrogram_url": f"{item}/spectrogram.png{span}"}
