"""What every call reports: the conventional gRPC server metrics, counted by one interceptor
placed before every other, so refusals of the credential check count too.

    grpc_server_started_total{grpc_type, grpc_service, grpc_method}
    grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}
    grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}  (histogram)

The names and labels are those of go-grpc-prometheus and the Python and Java ports, so the
dashboards and alerts written for them work unchanged. Labels never name an account or a user:
the series stay as many as methods times codes. Served on ``--metrics-address`` (off unless set)
by prometheus-client's own HTTP server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

if TYPE_CHECKING:
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.ServerInterceptor

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The server's metrics, in a registry of their own (several servers may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter("grpc_server_started", "RPCs started on the server.", labels, registry=self.registry)
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status code.",
            [*labels, "grpc_code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC's handler to its end.",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )

    def serve(self, address: str) -> None:
        """Serves /metrics over HTTP on host:port (prometheus-client's server, a daemon thread)."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)


class _Method:
    """The pre-resolved series of one method: no label lookups on the hot path."""

    def __init__(self, metrics: Metrics, full_method: str, kind: str) -> None:
        _, service, method = full_method.split("/", 2) if full_method.count("/") >= 2 else ("", "", full_method)
        self.labels = (kind, service, method)
        self.metrics = metrics
        self.started = metrics.started.labels(*self.labels)
        self.seconds = metrics.seconds.labels(*self.labels)
        self.handled: dict[grpc.StatusCode, Any] = {}

    def done(self, code: grpc.StatusCode | None, start: float) -> None:
        code = code or grpc.StatusCode.OK
        counter = self.handled.get(code)
        if counter is None:
            counter = self.handled[code] = self.metrics.handled.labels(*self.labels, code.name)
        counter.inc()
        self.seconds.observe(time.perf_counter() - start)


class MetricsInterceptor(_ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        # method -> (the handler seen, its wrapped twin, its series): wrapped once per method
        self._wrapped: dict[str, tuple[Any, Any, _Method]] = {}

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        known = self._wrapped.get(details.method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(handler, details.method)
        if known is None:  # the registered handler of a method; a one-off refusal handler is not kept
            self._wrapped[details.method] = (handler, wrapped, self._series(details.method, handler))
        return wrapped

    def _series(self, method: str, handler: Any) -> _Method:
        kind = (
            "unary"
            if handler.unary_unary
            else "server_stream"
            if handler.unary_stream
            else "client_stream"
            if handler.stream_unary
            else "bidi_stream"
        )
        return _Method(self.metrics, method, kind)

    def _wrap(self, handler: Any, method: str) -> Any:
        known = self._wrapped.get(method)
        series = known[2] if known is not None else self._series(method, handler)
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                series.started.inc()
                start = time.perf_counter()
                try:
                    response = inner(request, context)
                except BaseException:
                    series.done(context.code() or grpc.StatusCode.UNKNOWN, start)  # type: ignore[attr-defined]
                    raise
                series.done(context.code(), start)  # type: ignore[attr-defined]
                return response

            return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                series.started.inc()
                start = time.perf_counter()
                try:
                    yield from inner_stream(request, context)
                except BaseException:
                    series.done(context.code() or grpc.StatusCode.UNKNOWN, start)  # type: ignore[attr-defined]
                    raise
                series.done(context.code(), start)  # type: ignore[attr-defined]

            return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
        return handler  # no client-streaming methods in this contract
