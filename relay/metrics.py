"""Prometheus metrics. Coarse on purpose: route templates and status codes, never ids or PHI."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "relay_http_requests",
            "HTTP requests answered, by method, route template and status class.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "relay_http_request_duration_seconds",
            "Time to answer HTTP requests, by route template.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.logins = Counter(
            "relay_logins", "Login attempts by outcome.", ["outcome"], registry=self.registry
        )
        self.audit_events = Counter(
            "relay_audit_events", "Audit events recorded, by outcome.", ["outcome"], registry=self.registry
        )
        self.devices_revoked = Counter("relay_devices_revoked", "Devices revoked.", registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, f"{status // 100}xx").inc()
        self._latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
