"""Prometheus metrics of one app, in its own registry (``GET /metrics``).

* ``audiosim_http_requests_total{method,route,status}`` and
  ``audiosim_http_request_duration_seconds{method,route}`` (histogram): every request, labelled by
  the route *template* (``/api/collections/{name}/search``), so label values stay bounded;
  requests no route matched are ``route="unmatched"``.
* ``audiosim_search_stage_seconds{stage}`` (histogram): ``queue``, ``decode``, ``embed``, ``search``
  of each search.
* ``audiosim_inference_queue_depth``, ``audiosim_inference_running``, ``audiosim_inference_capacity``
  (gauges read at scrape time), ``audiosim_inference_rejected_total`` (503s: queue full) and
  ``audiosim_inference_expired_total`` (503s: waited past the queue bound).
* ``audiosim_collection_items{collection}`` and ``audiosim_collection_revision{collection}``
  (gauges read at scrape time).

:class:`MetricsMiddleware` is a plain ASGI middleware (no response buffering, streaming untouched).
"""

from __future__ import annotations

import time
from typing import Callable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """The metric objects of one app and the registry that exposes them."""

    def __init__(self, *, pool_stats: Callable, collection_sizes: Callable[[], dict[str, tuple[int, int]]]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("audiosim_http_requests", "HTTP requests answered.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("audiosim_http_request_duration_seconds", "Time to answer an HTTP request.",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram("audiosim_search_stage_seconds", "Time a search spent in each stage.", ["stage"],
                                buckets=LATENCY_BUCKETS, registry=self.registry)

        class _Live:
            """Gauges read when /metrics is scraped."""

            def describe(self):
                return []

            def collect(self):
                s = pool_stats()
                yield GaugeMetricFamily("audiosim_inference_queue_depth", "Searches waiting for an inference worker.",
                                        value=s.queued)
                yield GaugeMetricFamily("audiosim_inference_running", "Searches running on inference workers.",
                                        value=s.running)
                yield GaugeMetricFamily("audiosim_inference_capacity", "Workers plus queue slots.", value=s.capacity)
                yield CounterMetricFamily("audiosim_inference_rejected", "Searches refused with 503: queue full.",
                                          value=s.rejected)
                yield CounterMetricFamily("audiosim_inference_expired",
                                          "Searches refused with 503: waited past the queue bound.", value=s.expired)
                items = GaugeMetricFamily("audiosim_collection_items", "Items (vectors) in a served collection.",
                                          labels=["collection"])
                revision = GaugeMetricFamily("audiosim_collection_revision", "Revision a served collection is at.",
                                             labels=["collection"])
                for name, (size, rev) in collection_sizes().items():
                    items.add_metric([name], size)
                    revision.add_metric([name], rev)
                yield items
                yield revision

        self.registry.register(_Live())

    def observe_search(self, timing: dict[str, float]) -> None:
        for stage in ("queue", "decode", "embed", "search"):
            ms = timing.get(f"{stage}_ms")
            if ms is not None:
                self.stages.labels(stage).observe(ms / 1000.0)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app, *, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
