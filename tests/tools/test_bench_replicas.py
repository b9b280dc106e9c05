"""Unit tests of --replicas' parsing, load split and aggregation (no server, no h2load):
.venv/bin/python -m pytest -p no:cacheprovider bench"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import bench, h2load, replicas
from bench.replicas import CpuSplit, ReplicaRound, ReplicasResult, Share


def test_parse_counts_keeps_the_order_and_drops_repeats() -> None:
    assert replicas.parse_counts("1,2,3") == [1, 2, 3]
    assert replicas.parse_counts(" 3, 1 ,3,") == [3, 1]


@pytest.mark.parametrize("text", ["", ",", "0", "-1", "1,x", "2.5", str(replicas.MAX_REPLICAS + 1)])
def test_parse_counts_refuses_what_is_no_replica_count(text: str) -> None:
    with pytest.raises(ValueError):
        replicas.parse_counts(text)


def _in_flight(loads: list[h2load.Load]) -> list[int]:
    return [x.connections * x.streams for x in loads]


def test_split_load_gives_every_replica_an_even_share_of_the_in_flight_calls() -> None:
    base = h2load.Load(4, 8, 2.0)
    assert replicas.split_load(base, 1) == [base]
    assert replicas.split_load(base, 2) == [h2load.Load(2, 8, 2.0)] * 2
    three = replicas.split_load(base, 3)
    assert [(x.connections, x.streams) for x in three] == [(1, 11), (1, 11), (1, 10)]
    assert sum(_in_flight(three)) == 32
    five = replicas.split_load(base, 5)
    assert sum(_in_flight(five)) == 32 and max(_in_flight(five)) - min(_in_flight(five)) <= 1
    assert all(x.seconds == 2.0 and x.requests == 0 for x in five)


def test_split_load_rounds_streams_up_when_connections_do_not_divide_them() -> None:
    loads = replicas.split_load(h2load.Load(8, 8, 1.0), 3)  # 64 calls: 22/21/21 over 2 connections each
    assert [(x.connections, x.streams) for x in loads] == [(2, 11), (2, 11), (2, 11)]
    assert max(_in_flight(loads)) - min(_in_flight(loads)) <= 2  # at most one stream per connection over


def test_split_load_splits_a_request_count_too() -> None:
    loads = replicas.split_load(h2load.Load(4, 8, 5.0, requests=1000), 3)
    assert [x.requests for x in loads] == [334, 333, 333]
    with pytest.raises(ValueError):
        replicas.split_load(h2load.Load(), 0)


def _share(replica: int, ok: int, seconds: float = 2.0, cpu: float = 0.5, **non_ok: int) -> Share:
    return Share(replica, 1, 8, ok, dict(non_ok), True, "", seconds, cpu)


def _round(shares: list[Share], wall: float = 2.0, busy: float = 3.8, **cpu: float) -> ReplicaRound:
    split = CpuSplit(
        busy_s=busy,
        replicas_s=cpu.get("replicas", sum(s.server_cpu_s for s in shares)),
        backends_s=cpu.get("backends", 0.4),
        pg_background_s=cpu.get("background", 0.1),
        load_s=cpu.get("load", 1.0),
    )
    return ReplicaRound("GetSeatSummary", len(shares), 0, shares, wall, 2, split, 6, 5.0, 9.0, 100)


def test_a_round_adds_up_the_replicas_own_counts() -> None:
    r = _round([_share(1, 4000), _share(2, 3000, seconds=1.5, UNAVAILABLE=2), _share(3, 2000, INTERNAL=1)])
    assert r.ok == 9000
    assert r.per_replica == [2000.0, 2000.0, 1000.0]  # each over its own h2load's duration
    assert r.calls_per_s == 5000.0
    assert r.balance == 0.5
    assert r.non_ok == {"INTERNAL": 1, "UNAVAILABLE": 2}
    assert r.cpu_us_per_call == pytest.approx(1.5e6 / 9000)  # 3 x 0.5 s over the OK answers
    assert r.db_us_per_call == pytest.approx(0.4e6 / 9000)  # backends only, not background processes
    assert r.verified and not r.silent_replicas


def test_a_round_splits_the_machines_cpu_and_spots_other_programs() -> None:
    r = _round([_share(1, 1000, cpu=1.5)], busy=3.6)  # 2 s on 2 cores: 90% busy
    assert r.busy_share == pytest.approx(0.9)
    assert r.cores == pytest.approx({"replicas": 0.75, "postgres": 0.25, "load": 0.5, "other": 0.3})
    assert r.noisy  # 0.3 of a core is other programs'
    quiet = _round([_share(1, 1000, cpu=1.5)], busy=3.1)
    assert quiet.cores["other"] == pytest.approx(0.05) and not quiet.noisy
    # The sources tick at different moments: what is left over never goes below zero.
    assert CpuSplit(1.0, 0.8, 0.2, 0.1, 0.1).other_s == 0.0


def test_a_silent_replica_and_an_unverified_one_are_reported() -> None:
    unverified = Share(2, 1, 8, 500, {}, False, "no metrics endpoint", 2.0, 0.1)
    r = _round([_share(1, 0), unverified])
    assert r.silent_replicas == [1]
    assert not r.verified
    assert math.isnan(_round([_share(1, 0)]).cpu_us_per_call)


def test_cpu_used_counts_processes_that_came_during_the_round_whole() -> None:
    assert replicas.cpu_used({1: 10.0, 2: 5.0}, {1: 10.5, 3: 0.25}) == pytest.approx(0.75)


def _result(*rounds: ReplicaRound) -> ReplicasResult:
    return ReplicasResult("GetSeatSummary", "read", len(rounds[0].shares), [h2load.Load(2, 8, 2.0)] * 2, list(rounds))


def test_result_takes_medians_over_rounds_and_per_replica() -> None:
    a = _result(
        _round([_share(1, 2000), _share(2, 2000)]),
        _round([_share(1, 4000), _share(2, 2000)]),
        _round([_share(1, 3000), _share(2, 1000, UNAVAILABLE=1)]),
    )
    assert a.calls_per_s == 2000.0  # medians of 2000, 3000, 2000
    assert a.per_replica == [1500.0, 1000.0]
    assert a.balance == 0.5
    assert a.non_ok == {"UNAVAILABLE": 1}
    doc = a.to_json()
    assert doc["per_replica_calls_per_s"] == [1500.0, 1000.0]
    assert doc["h2load_per_replica"] == [{"connections": 2, "streams": 8}] * 2
    assert doc["rounds"][0]["shares"][1]["calls_per_s"] == 1000.0
    assert doc["silent_replicas"] == []


def test_table_and_warnings_show_every_replica_and_what_went_wrong() -> None:
    good = _result(_round([_share(1, 2000, cpu=0.5), _share(2, 2000)], busy=3.4))
    bad = _result(_round([_share(1, 2000), _share(2, 0, INTERNAL=3)], busy=3.9))
    text = replicas.table([good, bad], "title")
    lines = text.splitlines()
    assert lines[0] == "title"
    assert "1,000/1,000" in lines[3] and "servers" in lines[3]
    assert "3!!" in lines[4] and "SILENT" in lines[4]
    found = replicas.warnings([good, bad])
    assert any("NON-OK" in w and "3 INTERNAL" in w for w in found)
    assert any("answered nothing OK" in w for w in found)
    assert any("NOISY" in w for w in found)  # bad's round left 0.45 of a core to other programs


def test_reading_notes_say_what_a_small_machine_cannot_show() -> None:
    small = " ".join(replicas.reading_notes(2, 3, pinned=False))
    assert "cannot show more calls/s" in small and "share the load evenly" in small
    big = " ".join(replicas.reading_notes(16, 3, pinned=False))
    assert "cannot" not in big and "should grow with N" in big


def test_chart_is_written(tmp_path: Path) -> None:
    one = _result(_round([_share(1, 2000)]))
    two = _result(_round([_share(1, 2000), _share(2, 1800)]))
    out = tmp_path / "r.png"
    replicas.chart(out, [one, two], "title", 2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_line_refuses_replicas_on_sqlite(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--replicas", "1,2"])
    err = capsys.readouterr().err
    assert "SQLite" in err and "write lock" in err


def test_the_command_line_settings_of_replicas_mode() -> None:
    s = bench.settings_of(bench.parse_args(["--postgres", "--quick", "--replicas", "1,2,3"]))
    assert s.replicas == (1, 2, 3)
    assert s.only == frozenset(replicas.DEFAULT_RPCS)
    assert s.server_cpu is None and s.load_cpu is None  # not pinned unless asked
    normal = bench.settings_of(bench.parse_args(["--postgres", "--quick"]))
    assert normal.replicas == () and normal.only == frozenset()
    with pytest.raises(SystemExit):  # PurchaseSeats needs an account per replica and round
        bench.parse_args(["--postgres", "--replicas", "8", "--rounds", "10", "--accounts", "20"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--postgres", "--replicas", "1,x"])
