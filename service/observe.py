"""What every call reports, from one wrapper put around each handler when it is registered
(`register`; the credential check's refusals go through `Metrics.refused`): no interceptor
pipeline, and what is switched off costs a call nothing.

Metrics, the conventional gRPC server ones:

    grpc_server_started_total{grpc_type, grpc_service, grpc_method}
    grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}
    grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}  (histogram)

The names and labels are those of go-grpc-prometheus and the Python and Java ports, so the
dashboards and alerts written for them work unchanged. Then the seats' own:

    seats_purchased_total{hub, tier}                 seats bought, by a purchase or with a new
                                                     subscription (a purchase of 3 counts 3)
    seat_assignments_total{hub, tier, change}        change: assigned | unassigned | reclaimed (idle,
                                                     by the sweep); a move between tiers is an
                                                     unassigned and an assigned
    seats_refusals_total{reason}                     calls answered with an ErrorInfo reason
    seats_store_transaction_seconds{kind}            kind: write (one group commit) | read
    seats_store_group_commit_size                    write calls per group commit (histogram)
    seats_standby_lag_seconds                        with --read-database-url: how far the standby
                                                     may be behind (an upper bound)
    seats_stale_reads_total{target}                  lists and history read on: standby | primary
    seats_relay_lag_seconds, seats_relay_backlog_events, seats_relay_published_total,
    seats_relay_failures_total, seats_relay_leader   with --nats-url (service/relay.py)

Labels never name an account or a user: the series stay as many as methods times codes, hubs
times tiers, reasons. Served on ``--metrics-address`` (off unless set) by prometheus-client's
own HTTP server.

The call log (``--rpc-log``): one JSON line per call, logger ``seats.rpc``, message ``rpc``, with
``method``, ``code``, ``duration_ms``, ``actor``, ``request_id``, ``reason`` (a refusal's ErrorInfo
reason) and, when tracing is on, ``trace_id`` and ``span_id``. The line's fields are gathered only
for a call that is logged.

Tracing (service/tracing.py): with a tracer, each call is a SERVER span and each store
transaction a child span of it; without one the handlers are the plain ones.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from .admission import parsing
from .auth import ACTOR_HEADER
from .domain.model import Event, EventType, Hub, Tier
from .errors import DOMAIN

T = TypeVar("T")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
RPC_LOG_MODES = ("off", "errors", "all")
STATUS_DETAILS = "grpc-status-details-bin"
# The codes that are the server's failure rather than the caller's: the RPC semantic conventions
# mark a server span with one of them as an error; the call log writes them as warnings.
SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

rpc_log = logging.getLogger("seats.rpc")
_random = random.random


class Metrics:
    """The server's metrics, in a registry of their own (several servers may share a process),
    the call log's settings and the tracer (None: tracing off)."""

    def __init__(self, rpc_log: str = "off", rpc_log_sample: float = 1.0, tracer: Tracer | None = None) -> None:
        if rpc_log not in RPC_LOG_MODES:
            raise ValueError(f"rpc_log must be one of {', '.join(RPC_LOG_MODES)}, not {rpc_log!r}")
        if not 0.0 <= rpc_log_sample <= 1.0:
            raise ValueError(f"rpc_log_sample must be between 0 and 1, not {rpc_log_sample!r}")
        self.log_errors = rpc_log != "off"
        self.log_ok = rpc_log == "all" and rpc_log_sample > 0.0
        self.sample = rpc_log_sample
        self.tracer = tracer
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
        self.purchased = Counter(
            "seats_purchased", "Seats bought, by hub and tier.", ["hub", "tier"], registry=self.registry
        )
        self.assignments = Counter(
            "seat_assignments",
            "Seats given to (assigned) or taken from (unassigned) users, by hub and tier.",
            ["hub", "tier", "change"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "seats_refusals", "Calls answered with an error that has a reason.", ["reason"], registry=self.registry
        )
        self.transaction_seconds = Histogram(
            "seats_store_transaction_seconds",
            "Store transactions: a group commit of write calls, or a read.",
            ["kind"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.group_size = Histogram(
            "seats_store_group_commit_size",
            "Write calls committed in one transaction.",
            buckets=GROUP_BUCKETS,
            registry=self.registry,
        )
        self._series: dict[str, _Method] = {}
        self._refusals: dict[str, Any] = {}

    def instrument(self, handler: Any, method: str, message_type: type[Message] | None = None) -> Any:
        """handler, counting each call: started, then handled with its code and duration; logged
        and traced as configured. message_type (the request's) gives the log its request id."""
        series = self._series.get(method)
        if series is None:
            series = self._series[method] = _Method(self, method, _kind(handler), message_type)
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        traced = self.tracer is not None
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                series.started.inc()
                start = time.perf_counter()
                try:
                    response = inner(request, context)
                except BaseException:
                    series.done(context.code() or grpc.StatusCode.UNKNOWN, start, request, context)  # type: ignore[attr-defined]
                    raise
                series.done(context.code(), start, request, context)  # type: ignore[attr-defined]
                return response

            def traced_unary(request: Any, context: grpc.ServicerContext) -> Any:
                series.started.inc()
                start = time.perf_counter()
                span = series.span(context)
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    response = inner(request, context)
                except BaseException:
                    series.done(context.code() or grpc.StatusCode.UNKNOWN, start, request, context, span)  # type: ignore[attr-defined]
                    raise
                finally:
                    otel_context.detach(token)
                series.done(context.code(), start, request, context, span)  # type: ignore[attr-defined]
                return response

            return grpc.unary_unary_rpc_method_handler(traced_unary if traced else unary, **kwargs)
        if handler.unary_stream and getattr(handler.unary_stream, "experimental_non_blocking", False):
            inner_callback = handler.unary_stream  # answers through a callback, after the handler returns

            def callback_stream(request: Any, context: grpc.ServicerContext, send: Any = None) -> Any:
                series.started.inc()
                start = time.perf_counter()
                span = series.span(context) if traced else None
                context.add_callback(lambda: series.done(context.code(), start, request, context, span))  # type: ignore[attr-defined]
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
                    series.done(context.code() or grpc.StatusCode.UNKNOWN, start, request, context)  # type: ignore[attr-defined]
                    raise
                series.done(context.code(), start, request, context)  # type: ignore[attr-defined]

            def traced_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                series.started.inc()
                start = time.perf_counter()
                span = series.span(context)
                current = trace.set_span_in_context(span)
                try:
                    responses = iter(inner_stream(request, context))
                    while True:  # the span is current while the handler runs, not while grpcio sends
                        token = otel_context.attach(current)
                        try:
                            response = next(responses)
                        except StopIteration:
                            break
                        finally:
                            otel_context.detach(token)
                        yield response
                except BaseException:
                    series.done(context.code() or grpc.StatusCode.UNKNOWN, start, request, context, span)  # type: ignore[attr-defined]
                    raise
                series.done(context.code(), start, request, context, span)  # type: ignore[attr-defined]

            wrapped = traced_stream if traced else stream
            if handler.unary_stream:
                return grpc.unary_stream_rpc_method_handler(wrapped, **kwargs)
            return grpc.stream_stream_rpc_method_handler(wrapped, **kwargs)
        return handler  # no client-streaming methods in this contract

    def refused(self, method: str, kind: str, code: grpc.StatusCode) -> None:
        """Counts (and logs, unless the call log is off) a call refused on its headers, before
        any handler ran."""
        labels = (kind, *_service_and_method(method))
        self.started.labels(*labels).inc()
        self.handled.labels(*labels, code.name).inc()
        self.seconds.labels(*labels).observe(0.0)
        if self.log_errors:
            rpc_log.info(
                "rpc",
                extra={"method": method, "code": code.name, "duration_ms": 0.0, "actor": None, "request_id": None},
            )

    def refusal(self, reason: str) -> None:
        counter = self._refusals.get(reason)
        if counter is None:
            counter = self._refusals[reason] = self.refusals.labels(reason)
        counter.inc()

    def observe_store(self, store: Any) -> None:
        """Makes store report its transactions, group commits and events here, and its
        standby, when it has one, its lag and the reads it took."""
        store.observer = StoreObserver(self, getattr(store, "dialect", ""))
        if getattr(store, "standby_monitor", None) is not None:
            self.registry.register(_StandbyCollector(store))

    def serve(self, address: str) -> None:
        """Serves /metrics over HTTP on host:port (prometheus-client's server, a daemon thread)."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)


class _StandbyCollector:
    """Read at scrape time: the standby's lag bound and where stale-tolerant reads went."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        lag = self.store.standby_monitor.lag()
        yield GaugeMetricFamily(
            "seats_standby_lag_seconds",
            "How far the standby may be behind the primary (an upper bound; +Inf: not seen caught up).",
            value=lag,
        )
        reads = CounterMetricFamily(
            "seats_stale_reads", "Reads that tolerate staleness (lists, history), by where they ran.", labels=["target"]
        )
        for target, count in self.store.stale_reads.items():
            reads.add_metric([target], count)
        yield reads


def _kind(handler: Any) -> str:
    if handler.unary_unary:
        return "unary"
    if handler.unary_stream:
        return "server_stream"
    return "client_stream" if handler.stream_unary else "bidi_stream"


def _service_and_method(full_method: str) -> tuple[str, str]:
    _, service, method = full_method.split("/", 2) if full_method.count("/") >= 2 else ("", "", full_method)
    return service, method


def _reason(context: Any) -> str | None:
    """The ErrorInfo reason of the status a call ended with, if it has one of this service."""
    try:
        trailing = context.trailing_metadata()
    except AttributeError:
        return None
    for key, value in trailing or ():
        if key == STATUS_DETAILS:
            try:
                status = status_pb2.Status.FromString(value)
            except DecodeError:
                return None
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    if info.domain == DOMAIN and info.reason:
                        return info.reason
    return None


def _actor(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == ACTOR_HEADER:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None


class _Method:
    """The pre-resolved series of one method: no label lookups on the hot path."""

    def __init__(self, metrics: Metrics, full_method: str, kind: str, message_type: type[Message] | None) -> None:
        self.full_method = full_method
        self.labels = (kind, *_service_and_method(full_method))
        self.metrics = metrics
        self.started = metrics.started.labels(*self.labels)
        self.seconds = metrics.seconds.labels(*self.labels)
        self.handled: dict[grpc.StatusCode, Any] = {}
        self.log_errors, self.log_ok, self.sample = metrics.log_errors, metrics.log_ok, metrics.sample
        has_id = message_type is not None and "request_id" in message_type.DESCRIPTOR.fields_by_name
        self.parse = message_type.FromString if message_type is not None and has_id else None
        self.tracer = metrics.tracer
        self.span_name = full_method.lstrip("/")
        self.span_attributes = {
            "rpc.system": "grpc",
            "rpc.service": self.labels[1],
            "rpc.method": self.labels[2],
        }

    def span(self, context: grpc.ServicerContext) -> Span:
        """The call's SERVER span, the child of the caller's when its metadata carries one."""
        assert self.tracer is not None
        carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        return self.tracer.start_span(
            self.span_name,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=self.span_attributes,
        )

    def done(
        self,
        code: grpc.StatusCode | None,
        start: float,
        request: Any = None,
        context: Any = None,
        span: Span | None = None,
    ) -> None:
        elapsed = time.perf_counter() - start
        code = code or grpc.StatusCode.OK
        counter = self.handled.get(code)
        if counter is None:
            counter = self.handled[code] = self.metrics.handled.labels(*self.labels, code.name)
        counter.inc()
        self.seconds.observe(elapsed)
        if code is grpc.StatusCode.OK:
            if span is not None:
                span.set_attribute("rpc.grpc.status_code", 0)
                span.end()
            if self.log_ok and (self.sample >= 1.0 or _random() < self.sample):
                self.log(logging.INFO, code, elapsed, request, context, span, None)
            return
        reason = _reason(context) if context is not None else None
        if reason is not None:
            self.metrics.refusal(reason)
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in SERVER_ERRORS:
                span.set_status(StatusCode.ERROR, code.name)
            span.end()
        if self.log_errors:
            level = logging.WARNING if code in SERVER_ERRORS else logging.INFO
            self.log(level, code, elapsed, request, context, span, reason)

    def log(
        self,
        level: int,
        code: grpc.StatusCode,
        elapsed: float,
        request: Any,
        context: Any,
        span: Span | None,
        reason: str | None,
    ) -> None:
        if not rpc_log.isEnabledFor(level):  # e.g. --log-level WARNING and an OK call
            return
        entry: dict[str, Any] = {
            "method": self.full_method,
            "code": code.name,
            "duration_ms": round(elapsed * 1000.0, 3),
            "actor": _actor(context) if context is not None else None,
            "request_id": self.request_id(request),
        }
        if reason is not None:
            entry["reason"] = reason
        if span is not None:
            ids = span.get_span_context()
            if ids.is_valid:
                entry["trace_id"] = format(ids.trace_id, "032x")
                entry["span_id"] = format(ids.span_id, "016x")
        rpc_log.log(level, "rpc", extra=entry)

    def request_id(self, request: Any) -> str | None:
        """The request's request_id (the request arrives as bytes: parsed again, only for the log)."""
        if self.parse is None or not isinstance(request, bytes):
            return None
        try:
            return getattr(self.parse(request), "request_id", "") or None
        except (DecodeError, ValueError, RecursionError):
            return None


class StoreObserver:
    """What the store reports (service/store/store.py calls it only when it has one): its
    transactions' times and spans, group commit sizes, and the committed events the seat
    metrics count."""

    def __init__(self, metrics: Metrics, dialect: str) -> None:
        self.metrics = metrics
        self.tracer = metrics.tracer
        self.read_seconds = metrics.transaction_seconds.labels("read")
        self.write_seconds = metrics.transaction_seconds.labels("write")
        self.group_size = metrics.group_size
        self.db_system = {"sqlite": "sqlite", "postgres": "postgresql"}.get(dialect, dialect)
        self._purchased: dict[tuple[int, int], Any] = {}
        self._assignments: dict[tuple[int, int, str], Any] = {}

    def read(self, run: Callable[[Callable[[], T]], T], fn: Callable[[], T]) -> T:
        """Runs run(fn), one read transaction: timed, and a span when tracing is on."""
        start = time.perf_counter()
        try:
            if self.tracer is None:
                return run(fn)
            with self.tracer.start_as_current_span(
                "store read", kind=SpanKind.CLIENT, attributes={"db.system.name": self.db_system}
            ):
                return run(fn)
        finally:
            self.read_seconds.observe(time.perf_counter() - start)

    def write(self, run: Callable[[Any], None], job: Any) -> None:
        """Runs run(job), one write call's wait for and part in a group commit: a span when
        tracing is on (the group commit's time and size are reported by `committed`)."""
        if self.tracer is None:
            run(job)
            return
        with self.tracer.start_as_current_span(
            "store write", kind=SpanKind.CLIENT, attributes={"db.system.name": self.db_system}
        ) as span:
            run(job)
            span.set_attribute("seats.store.group_commit_size", job.group)
            if job.error is not None:
                span.set_attribute("error.type", type(job.error).__qualname__)

    def committed(self, size: int, seconds: float) -> None:
        """A group commit of size write calls took seconds."""
        self.group_size.observe(size)
        self.write_seconds.observe(seconds)

    def events(self, events: Sequence[Event]) -> None:
        """Committed events: the seats bought and the seats given and taken."""
        for e in events:
            if (e.type is EventType.SEATS_PURCHASED or e.type is EventType.POOL_OPENED) and e.quantity > 0:
                key = (e.hub, e.tier)
                counter = self._purchased.get(key)
                if counter is None:
                    counter = self._purchased[key] = self.metrics.purchased.labels(*_names(e.hub, e.tier))
                counter.inc(e.quantity)
            elif e.type in ASSIGNMENT_CHANGES:
                change = ASSIGNMENT_CHANGES[e.type]
                akey = (e.hub, e.tier, change)
                counter = self._assignments.get(akey)
                if counter is None:
                    counter = self._assignments[akey] = self.metrics.assignments.labels(*_names(e.hub, e.tier), change)
                counter.inc()


ASSIGNMENT_CHANGES = {
    EventType.SEAT_ASSIGNED: "assigned",
    EventType.SEAT_UNASSIGNED: "unassigned",
    EventType.SEAT_RECLAIMED: "reclaimed",
}
"""The change label of seat_assignments_total for each event that gives or takes a seat."""


def _names(hub: int, tier: int) -> tuple[str, str]:
    return Hub(hub).name.lower(), Tier(tier).name.lower()


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
    """Registers a servicer like its generated add function does, each method counted (logged,
    traced: Metrics.instrument) and parsing its own request (admission.parsing, with check on every parsed request): the
    handlers are wrapped once here, so a call pays for no interceptor pipeline."""
    capture = _Capture()
    add(servicer, capture)
    handlers = {
        name: metrics.instrument(
            parsing(h, h.request_deserializer.__self__, check),
            f"/{capture.service}/{name}",
            h.request_deserializer.__self__,
        )
        for name, h in capture.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.service, handlers),))
    server.add_registered_method_handlers(capture.service, handlers)  # type: ignore[attr-defined]
