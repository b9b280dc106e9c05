"""Observability beyond the gRPC counters: the call log (--rpc-log), OpenTelemetry traces (a
SERVER span per call joining the caller's traceparent, a span per store transaction under it),
and the seat metrics, whose labels never name an account or a user."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from seats.v1 import resources_pb2, seat_service_pb2, seat_service_pb2_grpc, user_service_pb2_grpc

from service import observe, tracing
from service.auth import hash_token
from service.config import Config, ConfigError
from service.server import JsonFormatter, create_server
from service.store import open_store
from tests.contract.helpers import (
    PROFESSIONAL,
    SALES,
    STARTER,
    Tenant,
    assign,
    new_account,
    new_user,
    purchase,
    unassign,
)
from tests.contract.test_readme import block
from tests.served import COMMAND_SECONDS, free_port, grpcurl_executable
from tests.toolkit import refused

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


@dataclass
class Served:
    seats: seat_service_pb2_grpc.SeatServiceStub
    users: user_service_pb2_grpc.UserServiceStub
    metrics_port: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    spans: InMemorySpanExporter | None = None

    def rpc_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["logger"] == "seats.rpc"]

    def scrape(self) -> str:
        return str(urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode())

    def sample(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent) of the scraped metrics."""
        for family in text_string_to_metric_families(self.scrape()):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return 0.0


class _Lines(logging.Handler):
    """Keeps every record as the JSON object the server's formatter writes."""

    def __init__(self, out: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.out = out
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(json.loads(self.format(record)))


@contextmanager
def captured_log(lines: list[dict[str, Any]]) -> Iterator[None]:
    logger = logging.getLogger("seats.rpc")
    handler, level = _Lines(lines), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@contextmanager
def serving(tmp_path: Path, *, traced: bool = False, **settings: Any) -> Iterator[Served]:
    url = f"sqlite:///{tmp_path / f'seats-{uuid.uuid4().hex[:8]}.db'}"
    store = open_store(url)
    store.migrate()
    metrics_port = free_port()
    config = Config(
        address="127.0.0.1:0",
        database_url=url,
        sweep_interval_seconds=0,
        metrics_address=f"127.0.0.1:{metrics_port}",
        **settings,
    )
    exporter = InMemorySpanExporter() if traced else None
    provider = None
    if exporter is not None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    lines: list[dict[str, Any]] = []
    with captured_log(lines):
        server, port = create_server(config, store, tracer_provider=provider)
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield Served(
                seat_service_pb2_grpc.SeatServiceStub(channel),
                user_service_pb2_grpc.UserServiceStub(channel),
                metrics_port,
                lines,
                exporter,
            )
        finally:
            channel.close()
            server.stop(None).wait()
            store.close()
            if provider is not None:
                provider.shutdown()


def fill(s: Served) -> tuple[Tenant, str]:
    """An account whose Sales Starter pool (1 seat) is taken by its owner; returns it and a seatless user."""
    tenant = new_account(s.seats, (SALES, STARTER, 0))
    assign(s.seats, tenant, tenant.owner_id, SALES, STARTER)
    return tenant, new_user(s.users, tenant).user_id


def refused_assignment(s: Served, tenant: Tenant, user_id: str, request_id: str = "") -> None:
    """Assigns a Sales Starter seat that `fill` left none of: refused as NO_SEAT_AVAILABLE."""
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(s.seats, tenant, user_id, SALES, STARTER, request_id=request_id)


# ---- the call log ---------------------------------------------------------------------------------


def test_call_log_all_writes_a_line_for_an_ok_and_a_refused_call(tmp_path: Path) -> None:
    with serving(tmp_path, rpc_log="all") as s:
        tenant, seatless = fill(s)
        s.lines.clear()
        s.seats.GetSeatSummary(
            seat_service_pb2.GetSeatSummaryRequest(account_id=tenant.id), metadata=(("x-seats-actor", tenant.owner_id),)
        )
        refused_assignment(s, tenant, seatless, request_id="req-observe-1")
        ok, refused = s.rpc_lines()
    assert ok["message"] == "rpc" and ok["level"] == "INFO"
    assert ok["method"] == "/seats.v1.SeatService/GetSeatSummary"
    assert ok["code"] == "OK"
    assert ok["actor"] == tenant.owner_id
    assert ok["request_id"] is None  # a read has no request id
    assert 0 < ok["duration_ms"] < 10_000
    assert "reason" not in ok and "trace_id" not in ok  # no tracing here
    assert refused["method"] == "/seats.v1.SeatService/AssignSeat"
    assert refused["code"] == "FAILED_PRECONDITION"
    assert refused["reason"] == "NO_SEAT_AVAILABLE"
    assert refused["actor"] == tenant.owner_id
    assert refused["request_id"] == "req-observe-1"
    assert refused["level"] == "INFO"  # the caller's refusal, not the server's failure


def test_call_log_errors_by_default_logs_refusals_and_no_ok_call(tmp_path: Path) -> None:
    assert Config().rpc_log == "errors"
    with serving(tmp_path) as s:
        tenant, seatless = fill(s)
        refused_assignment(s, tenant, seatless)
        lines = s.rpc_lines()
    assert [(line["method"], line["code"]) for line in lines] == [
        ("/seats.v1.SeatService/AssignSeat", "FAILED_PRECONDITION")
    ]


def test_call_log_off_writes_nothing(tmp_path: Path) -> None:
    with serving(tmp_path, rpc_log="off") as s:
        tenant, seatless = fill(s)
        refused_assignment(s, tenant, seatless)
        with pytest.raises(grpc.RpcError):
            s.seats.GetSeatSummary(seat_service_pb2.GetSeatSummaryRequest(account_id="acc_nobody"))
        assert s.rpc_lines() == []


def test_call_log_writes_the_credential_checks_refusals(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"name": "t", "scope": "system", "sha256": hash_token("seats_x")}]}))
    with serving(tmp_path, auth_tokens_file=str(tokens)) as s:
        with pytest.raises(grpc.RpcError) as refused:
            s.seats.GetSeatSummary(seat_service_pb2.GetSeatSummaryRequest(account_id="acc_x"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        (line,) = s.rpc_lines()
    assert (line["method"], line["code"]) == ("/seats.v1.SeatService/GetSeatSummary", "UNAUTHENTICATED")


class FakeContext:
    """What the wrapper asks of a grpcio servicer context."""

    def __init__(self, code: grpc.StatusCode | None = None) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-seats-actor", "usr_a"),)

    def trailing_metadata(self) -> None:
        return None


def calls(metrics: observe.Metrics, n: int, code: grpc.StatusCode | None = None) -> list[dict[str, Any]]:
    handler = metrics.instrument(grpc.unary_unary_rpc_method_handler(lambda request, context: b""), "/t.T/M")
    lines: list[dict[str, Any]] = []
    with captured_log(lines):
        for _ in range(n):
            handler.unary_unary(b"", FakeContext(code))
    return [line for line in lines if line["logger"] == "seats.rpc"]


def test_call_log_sample_logs_about_that_fraction_of_ok_calls() -> None:
    logged = len(calls(observe.Metrics(rpc_log="all", rpc_log_sample=0.25), 4000))
    assert 850 <= logged <= 1150  # 1,000 expected; the standard deviation is about 27
    assert len(calls(observe.Metrics(rpc_log="all", rpc_log_sample=1.0), 200)) == 200
    assert calls(observe.Metrics(rpc_log="all", rpc_log_sample=0.0), 200) == []
    # refusals and failures are never sampled away
    failed = calls(observe.Metrics(rpc_log="all", rpc_log_sample=0.0), 7, grpc.StatusCode.INTERNAL)
    assert len(failed) == 7 and {line["level"] for line in failed} == {"WARNING"}


def test_an_ok_call_gathers_no_log_fields_unless_it_is_logged(monkeypatch: pytest.MonkeyPatch) -> None:
    def gathered(context: Any) -> str:
        raise AssertionError("the log line's fields were gathered for a call that is not logged")

    monkeypatch.setattr(observe, "_actor", gathered)
    assert calls(observe.Metrics(rpc_log="errors"), 50) == []
    assert calls(observe.Metrics(rpc_log="all", rpc_log_sample=0.0), 50) == []
    assert calls(observe.Metrics(rpc_log="off"), 5, grpc.StatusCode.NOT_FOUND) == []


def test_call_log_settings_come_from_flags_and_environment(tmp_path: Path) -> None:
    _, config = Config.parse(["--rpc-log", "all", "--rpc-log-sample", "0.05"], env={})
    assert (config.rpc_log, config.rpc_log_sample) == ("all", 0.05)
    _, config = Config.parse([], env={"SEATS_RPC_LOG": "off"})
    assert config.rpc_log == "off"
    url = f"sqlite:///{tmp_path / 'seats.db'}"
    for bad in ({"rpc_log": "loud"}, {"rpc_log": "all", "rpc_log_sample": 1.5}):
        with pytest.raises(ConfigError, match="rpc-log"):
            create_server(Config(address="127.0.0.1:0", database_url=url, **bad))


# ---- tracing ------------------------------------------------------------------------------------------


def spans_named(s: Served, name: str) -> list[ReadableSpan]:
    assert s.spans is not None
    return [span for span in s.spans.get_finished_spans() if span.name == name]


def test_a_call_is_a_server_span_joining_the_callers_trace(tmp_path: Path) -> None:
    with serving(tmp_path, traced=True, rpc_log="all") as s:
        tenant, _ = fill(s)
        s.lines.clear()
        s.seats.GetSeatSummary(
            seat_service_pb2.GetSeatSummaryRequest(account_id=tenant.id),
            metadata=(("x-seats-actor", tenant.owner_id), ("traceparent", TRACEPARENT)),
        )
        (span,) = [x for x in spans_named(s, "seats.v1.SeatService/GetSeatSummary") if x.parent is not None]
        (line,) = s.rpc_lines()
    assert span.kind is SpanKind.SERVER
    assert dict(span.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "seats.v1.SeatService",
        "rpc.method": "GetSeatSummary",
        "rpc.grpc.status_code": 0,
    }
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_SPAN_ID
    assert span.parent.is_remote
    assert line["trace_id"] == TRACE_ID and line["span_id"] == format(span.context.span_id, "016x")


def test_a_call_without_traceparent_starts_a_trace_and_a_refusal_has_its_code(tmp_path: Path) -> None:
    with serving(tmp_path, traced=True) as s:
        tenant, seatless = fill(s)
        refused_assignment(s, tenant, seatless)
        spans = spans_named(s, "seats.v1.SeatService/AssignSeat")
    first, refused = spans
    assert first.parent is None and first.attributes is not None and first.attributes["rpc.grpc.status_code"] == 0
    assert refused.attributes is not None
    assert refused.attributes["rpc.grpc.status_code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert refused.status.is_unset  # the caller's refusal: not an error of the server's span


def test_each_store_transaction_is_a_child_span_of_its_call(tmp_path: Path) -> None:
    with serving(tmp_path, traced=True) as s:
        tenant = new_account(s.seats, (SALES, PROFESSIONAL, 0))
        s.seats.PurchaseSeats(
            seat_service_pb2.PurchaseSeatsRequest(account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1),
            metadata=(("x-seats-actor", tenant.owner_id), ("traceparent", TRACEPARENT)),
        )
        (call,) = spans_named(s, "seats.v1.SeatService/PurchaseSeats")
        assert s.spans is not None
        children = [x for x in s.spans.get_finished_spans() if x.parent and x.parent.span_id == call.context.span_id]
    writes = [x for x in children if x.name == "store write"]
    assert len(writes) == 1
    (write,) = writes
    assert write.context.trace_id == int(TRACE_ID, 16)
    assert write.attributes is not None
    assert write.attributes["db.system.name"] == "sqlite"
    assert write.attributes["seats.store.group_commit_size"] == 1
    assert write.start_time is not None and call.start_time is not None and write.start_time >= call.start_time


def test_tracing_is_off_without_an_endpoint_and_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracing.provider_from_env({}) is None
    assert tracing.tracer_of(None) is None
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    assert tracing.provider_from_env({**endpoint, "OTEL_SDK_DISABLED": "true"}) is None
    assert tracing.provider_from_env({**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is None
    with pytest.raises(ValueError, match="PROTOCOL"):
        tracing.provider_from_env({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
    for name, value in {
        **endpoint,
        "OTEL_SERVICE_NAME": "seats-eu1",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
    }.items():
        monkeypatch.setenv(name, value)
    provider = tracing.provider_from_env()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "seats-eu1"
        assert "0.25" in provider.sampler.get_description()
    finally:
        provider.shutdown()
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    provider = tracing.provider_from_env()
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "seats"
    finally:
        provider.shutdown()


def test_a_streaming_call_is_one_span_current_while_its_handler_runs() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = observe.Metrics(tracer=provider.get_tracer("test"))
    seen: list[int] = []

    def responses(request: bytes, context: Any) -> Iterator[bytes]:
        for _ in range(3):
            seen.append(trace.get_current_span().get_span_context().span_id)
            yield b"x"

    handler = metrics.instrument(grpc.unary_stream_rpc_method_handler(responses), "/t.T/Watch")
    assert list(handler.unary_stream(b"", FakeContext())) == [b"x"] * 3
    assert trace.get_current_span() is trace.INVALID_SPAN  # the caller's context is left as it was
    (span,) = exporter.get_finished_spans()
    assert span.name == "t.T/Watch" and span.kind is SpanKind.SERVER
    assert seen == [span.context.span_id] * 3
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 0
    provider.shutdown()


# ---- seat metrics ---------------------------------------------------------------------------------------

SEAT_LABELS = {"hub", "tier", "change", "reason", "kind", "le"}


def test_seat_metrics_move(tmp_path: Path) -> None:
    with serving(tmp_path) as s:
        tenant = new_account(s.seats, (SALES, PROFESSIONAL, 0))
        pro = {"hub": "sales", "tier": "professional"}
        before = s.sample("seats_purchased_total", **pro)
        purchase(s.seats, tenant, SALES, PROFESSIONAL, 3)
        assert s.sample("seats_purchased_total", **pro) == before + 3
        user = new_user(s.users, tenant).user_id
        assign(s.seats, tenant, user, SALES, PROFESSIONAL)
        unassign(s.seats, tenant, user, SALES)
        assert s.sample("seat_assignments_total", **pro, change="assigned") == 1
        assert s.sample("seat_assignments_total", **pro, change="unassigned") == 1
        purchase(s.seats, tenant, SALES, PROFESSIONAL, 1, validate_only=True)  # rolled back: not counted
        assert s.sample("seats_purchased_total", **pro) == before + 3
        full, seatless = fill(s)
        refused_assignment(s, full, seatless)
        assert s.sample("seats_refusals_total", reason="NO_SEAT_AVAILABLE") == 1
        assert s.sample("seats_store_transaction_seconds_count", kind="write") >= 5
        assert s.sample("seats_store_group_commit_size_count") == s.sample(
            "seats_store_transaction_seconds_count", kind="write"
        )
        assert s.sample("seats_store_group_commit_size_sum") >= s.sample("seats_store_group_commit_size_count")
        s.seats.GetSeatSummary(
            seat_service_pb2.GetSeatSummaryRequest(account_id=tenant.id), metadata=(("x-seats-actor", tenant.owner_id),)
        )
        assert s.sample("seats_store_transaction_seconds_count", kind="read") >= 1


def test_no_seat_metric_label_names_an_account_or_a_user(tmp_path: Path) -> None:
    with serving(tmp_path) as s:
        tenant, seatless = fill(s)
        refused_assignment(s, tenant, seatless)
        purchase(s.seats, tenant, SALES, STARTER, 1)
        text = s.scrape()
    ours = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family.name.startswith(("seats_", "seat_"))
    ]
    assert {sample.name.split("{")[0] for sample in ours} >= {
        "seats_purchased_total",
        "seat_assignments_total",
        "seats_refusals_total",
        "seats_store_transaction_seconds_count",
        "seats_store_group_commit_size_count",
    }
    assert {name for sample in ours for name in sample.labels} <= SEAT_LABELS
    for ident in (tenant.id, tenant.owner_id, seatless):
        assert ident not in text


def test_seat_metric_tiers_and_hubs_are_named_as_in_the_contract() -> None:
    hubs = {v.name.removeprefix("HUB_").lower() for v in resources_pb2.Hub.DESCRIPTOR.values if v.number}
    tiers = {v.name.removeprefix("TIER_").lower() for v in resources_pb2.Tier.DESCRIPTOR.values if v.number}
    assert {observe._names(h, t) for h in (1, 2) for t in (1, 2, 3, 4)} == {(h, t) for h in hubs for t in tiers}


def test_the_log_line_is_one_json_object_per_line() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("seats.rpc")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        handler_under_test = observe.Metrics(rpc_log="all").instrument(
            grpc.unary_unary_rpc_method_handler(lambda request, context: b""), "/t.T/M"
        )
        handler_under_test.unary_unary(b"", FakeContext())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert {"time", "level", "logger", "message", "method", "code", "duration_ms", "actor", "request_id"} <= set(entry)
    assert (entry["method"], entry["code"], entry["actor"]) == ("/t.T/M", "OK", "usr_a")


# ---- the README's blocks -------------------------------------------------------------------------


def run_readme_block(name: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs a README block with bash -e, seats-server and grpcurl on the PATH, no SEATS_ or OTEL_
    setting but env's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SEATS_", "OTEL_"))}
    path = os.pathsep.join([str(Path(sys.executable).parent), str(Path(grpcurl_executable()).parent), clean["PATH"]])
    return subprocess.run(
        ["bash", "-e", "-c", block(name)],
        cwd=cwd,
        env={**clean, **env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def test_readme_metrics_and_call_log_block_runs(tmp_path: Path) -> None:
    done = run_readme_block(
        "observe-metrics",
        tmp_path,
        {"SEATS_ADDRESS": f"127.0.0.1:{free_port()}", "SEATS_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"},
    )
    assert done.returncode == 0, f"the block failed:\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    handled = [line for line in lines if line.startswith("grpc_server_handled_total")]
    assert any('grpc_method="CreateAccount"' in line and 'grpc_code="OK"' in line for line in handled), handled
    assert any('grpc_method="GetSeatSummary"' in line and 'grpc_code="NOT_FOUND"' in line for line in handled)
    assert 'seats_purchased_total{hub="sales",tier="starter"} 1.0' in lines
    assert 'seats_refusals_total{reason="ACCOUNT_NOT_FOUND"} 1.0' in lines
    calls = [json.loads(line) for line in lines if line.startswith("{")]
    by_method = {c["method"].rsplit("/", 1)[1]: c for c in calls}
    assert by_method["CreateAccount"]["code"] == "OK"
    assert by_method["CreateAccount"]["request_id"] == "initech-1"
    assert by_method["GetSeatSummary"]["code"] == "NOT_FOUND"
    assert by_method["GetSeatSummary"]["reason"] == "ACCOUNT_NOT_FOUND"
    assert all(c["logger"] == "seats.rpc" and c["message"] == "rpc" for c in calls)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace collector that keeps what it receives."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def test_readme_tracing_block_runs_and_its_spans_reach_the_collector(tmp_path: Path) -> None:
    collector = Collector()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        done = run_readme_block(
            "observe-traces",
            tmp_path,
            {"SEATS_ADDRESS": f"127.0.0.1:{free_port()}", "OTLP_ENDPOINT": f"http://127.0.0.1:{port}"},
        )
    finally:
        server.stop(None)
    assert done.returncode == 0, f"the block failed:\n{done.stdout}\n{done.stderr}"
    spans = {}
    for request in collector.requests:
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "seats"
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    if span.trace_id.hex() == TRACE_ID:
                        spans[span.name] = span
    call = spans["seats.v1.SeatService/CreateAccount"]
    assert call.parent_span_id.hex() == PARENT_SPAN_ID
    assert {a.key: a.value.string_value for a in call.attributes if a.value.HasField("string_value")} == {
        "rpc.system": "grpc",
        "rpc.service": "seats.v1.SeatService",
        "rpc.method": "CreateAccount",
    }
    assert spans["store write"].parent_span_id == call.span_id
