"""Unit tests of the bench's parsers and helpers (make bench itself is not part of make test)."""

from __future__ import annotations

import math

import pytest

from bench import h2load, metrics
from bench.cases import Case, Probe, goal, grpc_frame
from bench.dataset import Database, _spread

SAMPLE = r"""# HELP grpc_server_started_total Total number of RPCs started on the server.
# TYPE grpc_server_started_total counter
grpc_server_started_total{$U,$S,grpc_method="GetSeatSummary"} 1042.0
# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{$U,$S,grpc_method="GetSeatSummary",grpc_code="OK"} 1040.0
grpc_server_handled_total{$U,$S,grpc_method="GetSeatSummary",grpc_code="RESOURCE_EXHAUSTED"} 2.0
grpc_server_handled_total{$U,$S,grpc_method="PurchaseSeats",grpc_code="OK"} 7.0
grpc_server_handled_total{grpc_type="server_stream",$S,grpc_method="GetSeatSummary",grpc_code="OK"} 99.0
grpc_server_handled_total{grpc_code="NOT_FOUND",grpc_method="GetUser",grpc_service="seats.v1.UserService"} 3 17123456
# TYPE grpc_server_handled_created gauge
grpc_server_handled_created{$U,$S,grpc_method="GetSeatSummary",grpc_code="OK"} 1.7e+09
odd_metric{path="a \"quoted\" \\ back\nslash",empty=""} +Inf
no_labels NaN
process_resident_memory_bytes 5.2887552e+07
""".replace("$U", 'grpc_type="unary"').replace("$S", 'grpc_service="seats.v1.SeatService"')


def test_parse_reads_every_sample_and_unescapes_labels() -> None:
    samples = metrics.parse(SAMPLE)
    assert len(samples) == 10
    odd = next(s for s in samples if s.name == "odd_metric")
    assert odd.labels == {"path": 'a "quoted" \\ back\nslash', "empty": ""}
    assert odd.value == math.inf
    assert math.isnan(next(s for s in samples if s.name == "no_labels").value)
    timestamped = next(s for s in samples if s.labels.get("grpc_method") == "GetUser")
    assert timestamped.value == 3.0  # the timestamp is not the value


def test_handled_counts_one_unary_method_by_code() -> None:
    samples = metrics.parse(SAMPLE)
    summary = metrics.handled(samples, "seats.v1.SeatService", "GetSeatSummary")
    assert summary.present
    assert summary.by_code == {"OK": 1040.0, "RESOURCE_EXHAUSTED": 2.0}  # not the stream, not _created
    assert summary.ok == 1040.0
    absent = metrics.handled(samples, "seats.v1.SeatService", "AssignSeat")
    assert not absent.present and absent.ok == 0.0


def test_minus_gives_the_answers_between_two_scrapes() -> None:
    before = metrics.Handled({"OK": 1040.0, "RESOURCE_EXHAUSTED": 2.0}, True)
    after = metrics.Handled({"OK": 5040.0, "RESOURCE_EXHAUSTED": 2.0, "UNAVAILABLE": 1.0}, True)
    assert after.minus(before) == {"OK": 4000, "UNAVAILABLE": 1}
    assert after.minus(metrics.Handled({}, False)) == {"OK": 5040, "RESOURCE_EXHAUSTED": 2, "UNAVAILABLE": 1}


@pytest.mark.parametrize("line", ['m{a="x" 1', "m{a=x} 1", 'm{a="x"}', '{a="x"} 1', "m abc"])
def test_parse_refuses_broken_lines(line: str) -> None:
    with pytest.raises(metrics.ParseError):
        metrics.parse(line)


def test_scrape_of_nothing_is_unavailable() -> None:
    from bench.servers import free_port

    with pytest.raises(metrics.MetricsUnavailable):
        metrics.scrape(f"127.0.0.1:{free_port()}", timeout=1)


H2LOAD_OUT = """starting benchmark...
Application protocol: h2c

finished in 2.00s, 7869.50 req/s, 470.46KB/s
requests: 15739 total, 15771 started, 15739 done, 15739 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 15737 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 940.92KB (963507) total, 46.40KB (47517) headers (space savings 96.27%), 76.85KB (78695) data
"""


def test_h2load_summary() -> None:
    s = h2load.parse_summary(H2LOAD_OUT)
    assert s.seconds == 2.0
    assert (s.done, s.succeeded, s.failed, s.status_2xx, s.status_other) == (15739, 15739, 0, 15737, 2)
    assert h2load.parse_summary(H2LOAD_OUT.replace("2.00s,", "523.50ms,")).seconds == pytest.approx(0.5235)
    with pytest.raises(h2load.H2loadError):
        h2load.parse_summary("connect failed")


def test_h2load_log_and_percentiles() -> None:
    log = "1796132875388566\t200\t3030\n1796132875388569\t200\t3560\nbroken line\n1796132875388570\t200\t100\n"
    values = h2load.parse_log(log)
    assert values == [3030, 3560, 100]
    assert h2load.percentile(values, 0.5) == 3030
    assert h2load.percentile(values, 0.99) == 3560
    assert h2load.percentile(list(range(1, 101)), 0.99) == 99
    assert math.isnan(h2load.percentile([], 0.5))


def test_h2load_command_sends_a_grpc_post(tmp_path: object) -> None:
    from pathlib import Path

    probe = Probe("seats.v1.SeatService", "GetSeatSummary", b"\x0a\x03acc", "usr_1")
    args = h2load.command(probe, "127.0.0.1:5000", h2load.Load(4, 8, 2.5), Path("/tmp/b"), Path("/tmp/l"), None)
    assert args[1:] == [
        "-c", "4", "-m", "8", "-t", "1", "-D", "2500ms", "-d", "/tmp/b",
        "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "x-seats-actor: usr_1",
        "--log-file", "/tmp/l", "http://127.0.0.1:5000/seats.v1.SeatService/GetSeatSummary",
    ]  # fmt: skip
    with pytest.raises(h2load.H2loadError):
        h2load.command(probe, "10.0.0.1:5000", h2load.Load(), Path("/tmp/b"), None, None)


def test_grpc_frame() -> None:
    assert grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert grpc_frame(b"") == b"\x00\x00\x00\x00\x00"
    assert len(grpc_frame(b"x" * 70000)) == 70005 and grpc_frame(b"x" * 70000)[1:5] == (70000).to_bytes(4, "big")


def test_goals() -> None:
    assert goal(Case("GetUser", "read"), "sqlite") == 0.7
    assert goal(Case("GetUser", "read"), "postgres") == 0.5
    assert goal(Case("ListUsers(50)", "read"), "postgres") == 0.3
    assert goal(Case("PurchaseSeats", "write"), "sqlite") == 0.4
    assert goal(Case("AssignSeat", "write"), "postgres") == 0.2


def test_database_urls_stay_on_loopback() -> None:
    db = Database.from_url("postgresql://postgres@127.0.0.1:5432/test?schema=bench_ab12")
    assert db.store == "postgres" and db.schema == "bench_ab12" and db.pg["dbname"] == "test"
    with pytest.raises(ValueError, match="loopback"):
        Database.from_url("postgresql://postgres@192.168.1.5:5432/test?schema=x")
    with pytest.raises(ValueError, match="schema"):
        Database.from_url("postgresql://postgres@127.0.0.1:5432/test")
    assert Database.from_url("sqlite:////tmp/x.db").sqlite_path == "/tmp/x.db"


def test_spread_keeps_order_and_count() -> None:
    ids = [f"u{i:04d}" for i in range(1000)]
    picked = _spread(ids, 100)
    assert len(picked) == 100 and picked == sorted(picked) and picked[0] == "u0000" and picked[-1] == "u0990"
    assert _spread(ids[:5], 100) == ids[:5]


def test_rpc_log_option_sets_the_seat_servers_call_log() -> None:
    from bench.bench import parse_args, settings_of

    assert settings_of(parse_args([])).service_env == {}
    s = settings_of(parse_args(["--rpc-log", "all", "--rpc-log-sample", "0.1"]))
    assert s.service_env == {"SEATS_RPC_LOG": "all", "SEATS_RPC_LOG_SAMPLE": "0.1"}
    for bad in (["--rpc-log", "loud"], ["--rpc-log-sample", "2"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_the_env_the_seat_server_gets_carries_the_settings(tmp_path: object) -> None:
    from pathlib import Path

    from bench.servers import CodeUnderTest
    from service.config import Config

    env = CodeUnderTest(Path("/x"), "python").env({"SEATS_RPC_LOG": "all", "SEATS_RPC_LOG_SAMPLE": "0.1"})
    _, config = Config.parse([], env=env)
    assert (config.rpc_log, config.rpc_log_sample) == ("all", 0.1)


def test_log_summary_counts_a_log_of_many_lines(tmp_path: object) -> None:
    import subprocess
    from pathlib import Path

    from bench.servers import ServerProcess

    log_path = Path(str(tmp_path)) / "service.log"
    rpc = '{"level": "INFO", "logger": "seats.rpc", "message": "rpc", "code": "OK"}\n'
    log_path.write_text('{"level": "INFO", "message": "serving", "port": 5}\n' + rpc * 5000 + "not json\n")
    server = ServerProcess("seat server", subprocess.Popen(["true"]), log_path, "")
    server.popen.wait()
    assert server.log_summary() == {"levels": {"INFO": 5001, "RAW": 1}, "warnings_and_errors": {"not json": 1}}
