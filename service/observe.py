"""What every call reports: the conventional gRPC server metrics. Each method's handler is
wrapped once when it is registered (`register`), and the credential check wraps its refusals the
same way (`Metrics.instrument`), so every call counts and none pays for an interceptor pipeline.

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
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from .admission import parsing

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
        self._series: dict[str, _Method] = {}

    def instrument(self, handler: Any, method: str) -> Any:
        """handler, counting each call: started, then handled with its code and duration."""
        series = self._series.get(method)
        if series is None:
            series = self._series[method] = _Method(self, method, _kind(handler))
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
        if handler.unary_stream and getattr(handler.unary_stream, "experimental_non_blocking", False):
            inner_callback = handler.unary_stream  # answers through a callback, after the handler returns

            def callback_stream(request: Any, context: grpc.ServicerContext, send: Any = None) -> Any:
                series.started.inc()
                start = time.perf_counter()
                context.add_callback(lambda: series.done(context.code(), start))  # type: ignore[attr-defined]
                return inner_callback(request, context, send)

            callback_stream.experimental_non_blocking = True  # type: ignore[attr-defined]
            return grpc.unary_stream_rpc_method_handler(callback_stream, **kwargs)
        if handler.unary_stream or handler.stream_stream:
            inner_stream = handler.unary_stream or handler.stream_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                series.started.inc()
                start = time.perf_counter()
                try:
                    yield from inner_stream(request, context)
                except BaseException:
                    series.done(context.code() or grpc.StatusCode.UNKNOWN, start)  # type: ignore[attr-defined]
                    raise
                series.done(context.code(), start)  # type: ignore[attr-defined]

            if handler.unary_stream:
                return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
            return grpc.stream_stream_rpc_method_handler(stream, **kwargs)
        return handler  # no client-streaming methods in this contract

    def refused(self, method: str, kind: str, code: grpc.StatusCode) -> None:
        """Counts a call refused on its headers, before any handler ran."""
        labels = (kind, *_service_and_method(method))
        self.started.labels(*labels).inc()
        self.handled.labels(*labels, code.name).inc()
        self.seconds.labels(*labels).observe(0.0)

    def serve(self, address: str) -> None:
        """Serves /metrics over HTTP on host:port (prometheus-client's server, a daemon thread)."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)


def _kind(handler: Any) -> str:
    if handler.unary_unary:
        return "unary"
    if handler.unary_stream:
        return "server_stream"
    return "client_stream" if handler.stream_unary else "bidi_stream"


def _service_and_method(full_method: str) -> tuple[str, str]:
    _, service, method = full_method.split("/", 2) if full_method.count("/") >= 2 else ("", "", full_method)
    return service, method


class _Method:
    """The pre-resolved series of one method: no label lookups on the hot path."""

    def __init__(self, metrics: Metrics, full_method: str, kind: str) -> None:
        self.labels = (kind, *_service_and_method(full_method))
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


class _Capture:
    """Stands in for a server to a generated add_XServicer_to_server: keeps its handlers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.service, self.handlers = service, handlers


def register(
    server: grpc.Server,
    add: Callable[[Any, Any], None],
    servicer: Any,
    metrics: Metrics,
    check: Callable[[Any], None] | None = None,
) -> None:
    """Registers a servicer like its generated add function does, each method counted and
    parsing its own request (admission.parsing, with check on every parsed request): the
    handlers are wrapped once here, so a call pays for no interceptor pipeline."""
    capture = _Capture()
    add(servicer, capture)
    handlers = {
        name: metrics.instrument(
            parsing(h, h.request_deserializer.__self__, check),
            f"/{capture.service}/{name}",
        )
        for name, h in capture.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.service, handlers),))
    server.add_registered_method_handlers(capture.service, handlers)  # type: ignore[attr-defined]
