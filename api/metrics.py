"""Prometheus metrics (``/metrics``), one registry per application instance."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""Media type of the Prometheus text exposition format."""


class Metrics:
    """The service's counters and histograms; routes are labelled by template, never by id."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "igrt_http_requests_total",
            "HTTP requests answered.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "igrt_http_request_duration_seconds",
            "Time from request to the end of the response.",
            ("method", "route"),
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "igrt_http_requests_in_flight", "Requests being served.", registry=self.registry
        )
        self.uploads = Counter(
            "igrt_uploads_total",
            "Uploads accepted, by kind and format.",
            ("kind", "format"),
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "igrt_upload_bytes_total", "Bytes of accepted uploads.", registry=self.registry
        )

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
