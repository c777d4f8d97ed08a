"""What the HTTP handlers share: settings, the store, the gateway's own metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

from pushgw.config import Settings
from pushgw.selfmetrics import GatewayMetrics
from pushgw.storage.store import MetricStore


class Gateway:
    """One running gateway; handlers reach it as ``request.app.state.gateway``."""

    def __init__(self, settings: Settings, on_shutdown_request: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.route_prefix = settings.effective_route_prefix
        self.started_at = time.time()
        self.store = MetricStore(check_consistency=not settings.disable_consistency_check)
        self.metrics = GatewayMetrics(lambda: (len(self.store.groups), self.store.series_count))
        self.store.reserved = self.metrics.reserved()
        self.ready = True
        self._on_shutdown_request = on_shutdown_request

    def count_request(self, handler: str, method: str, code: int) -> None:
        self.metrics.requests.labels(str(code), handler, method.lower()).inc()

    def request_shutdown(self) -> None:
        self._on_shutdown_request()
