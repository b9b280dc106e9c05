"""The database goes away under a running server: calls fail with UNAVAILABLE (STORE_UNAVAILABLE)
within their deadline, never UNKNOWN or INTERNAL, and once the database is back the same server
process answers again by itself. The PostgreSQL here is the test's own (initdb into a temporary
folder, its own port and socket folder), never the shared one: it is stopped with `-m immediate`,
as a crash or a failover would."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.served import free_port, serving
from tests.toolkit import cancel, describe, replay_log, unique_email

from .support import (
    PROFESSIONAL,
    SALES,
    Answer,
    Client,
    actor,
    all_events,
    call,
    check_answers_against_log,
    check_final_state,
    connected,
    new_request_id,
    tally,
)

pytestmark = pytest.mark.slow

PG_ROOT = Path("/usr/lib/postgresql")
PG_SECONDS = 60.0
"""Bound of every initdb / pg_ctl run."""
OUTAGE_DEADLINE = 8.0
"""Deadline of each call made while the database is down: the answer must come before it."""
RECOVERY_SECONDS = 30.0
"""After the database is back, the server has this long to answer a call OK again."""
RECOVERY_ATTEMPTS = 100
BURST_CALLS = 64
BURST_THREADS = 8
MAX_ATTEMPTS_AFTER_RECOVERY = 3
WRITER_THREADS = 4
MAX_WRITES_PER_THREAD = 500
WATCH_SECONDS = 120.0
WATCH_END_SECONDS = 10.0
"""A watch polls every --watch-poll-seconds (0.5): it must notice the outage well within this."""
"""Once a call succeeded again, every further call succeeds within this many attempts."""


def postgres_bin() -> Path | None:
    """The bin folder of an installed PostgreSQL (15 preferred) with initdb and pg_ctl."""
    folders = sorted(PG_ROOT.glob("*/bin"), key=lambda p: (p.parent.name != "15", p.parent.name))
    return next((f for f in folders if (f / "initdb").is_file() and (f / "pg_ctl").is_file()), None)


class OwnPostgres:
    """A throwaway PostgreSQL cluster: initdb'd into a temporary folder, on a free port, run as the
    `postgres` OS user when the tests run as root (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="seats-outage-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.sockets.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            runuser = shutil.which("runuser")
            self.as_user = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]
        self.root.chmod(0o700)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?schema=seats_outage&connect_timeout=2"

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / tool), *args]
        if self.as_user and self.as_user[0] == "su":
            command = [*self.as_user, " ".join(f"'{c}'" for c in command)]
        else:
            command = [*self.as_user, *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=PG_SECONDS, check=False, cwd=self.root)
        assert done.returncode == 0, (
            f"{tool} {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}\n{self.log_text()}"
        )
        return done

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def init(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=60 -c shared_buffers=16MB"
        )
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")

    def stop_immediately(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def ensure_running(self) -> None:
        """Leaves the cluster up for the next test, whatever the last one did."""
        if not self.running:
            self.start()

    def cleanup(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
                if self.as_user[:1] != ["su"]
                else [*self.as_user, f"'{self.bindir / 'pg_ctl'}' -D '{self.data}' -m immediate -w stop"],
                capture_output=True, timeout=PG_SECONDS, check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip(f"no PostgreSQL binaries (initdb, pg_ctl) under {PG_ROOT}/*/bin: no database of our own to stop")
    pg = OwnPostgres(bindir)
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.cleanup()


MixedCall = tuple[str, Callable[..., Any], Message]
"""(op, method, request) of one of the burst's calls."""


MUTATING_REQUESTS = (
    seat_service_pb2.PurchaseSeatsRequest, seat_service_pb2.AssignSeatRequest, user_service_pb2.CreateUserRequest
)


def mixed_calls(client: Client, account_id: str, user_id: str) -> list[MixedCall]:
    """One call of each kind, reads and writes: (op, method, request)."""
    return [
        ("summary", client.seats.GetSeatSummary, seat_service_pb2.GetSeatSummaryRequest(account_id=account_id)),
        ("account", client.seats.GetAccount, seat_service_pb2.GetAccountRequest(account_id=account_id)),
        ("events", client.seats.ListSeatEvents, seat_service_pb2.ListSeatEventsRequest(account_id=account_id)),
        ("users", client.users.ListUsers, user_service_pb2.ListUsersRequest(account_id=account_id)),
        ("purchase", client.seats.PurchaseSeats, seat_service_pb2.PurchaseSeatsRequest(
            account_id=account_id, hub=SALES, tier=PROFESSIONAL, quantity=1, request_id=new_request_id("outage"))),
        ("assign", client.seats.AssignSeat, seat_service_pb2.AssignSeatRequest(
            account_id=account_id, user_id=user_id, hub=SALES, tier=PROFESSIONAL, purchase_if_needed=True,
            request_id=new_request_id("outage"))),
        ("create_user", client.users.CreateUser, user_service_pb2.CreateUserRequest(
            account_id=account_id, email=unique_email("outage"), request_id=new_request_id("outage"))),
    ]


def burst(client: Client, account_id: str, owner: tuple[tuple[str, str], ...], user_id: str, *, timeout: float,
          attempts: int) -> list[list[Answer]]:
    """BURST_CALLS mixed calls from BURST_THREADS threads (so that many of the server's handler
    threads, each with a database connection of its own, take part); each call is tried up to
    `attempts` times with the same request. Returns the answers of every attempt, per call."""
    kinds = mixed_calls(client, account_id, user_id)
    plan = [kinds[i % len(kinds)] for i in range(BURST_CALLS)]

    def run(item: MixedCall) -> list[Answer]:
        op, method, request = item
        if op in ("purchase", "assign", "create_user"):
            fresh = type(request)()
            fresh.CopyFrom(item[2])
            assert isinstance(fresh, MUTATING_REQUESTS), fresh
            fresh.request_id = new_request_id("outage")
            if isinstance(fresh, user_service_pb2.CreateUserRequest):  # op "create_user"
                fresh.email = unique_email("outage")
            request = fresh
        tried: list[Answer] = []
        for _ in range(attempts):
            tried.append(call(method, request, op=op, metadata=owner, timeout=timeout))
            if tried[-1].ok:
                break
        return tried

    with ThreadPoolExecutor(max_workers=BURST_THREADS) as pool:
        return list(pool.map(run, plan, timeout=attempts * (timeout + 5) * BURST_CALLS / BURST_THREADS + 30))


class Writers:
    """Writes that keep going while the database is stopped under them: some are inside a
    transaction at that moment. Each thread stops at its first failure."""

    def __init__(self, client: Client, account_id: str, owner: tuple[tuple[str, str], ...]) -> None:
        self.client, self.account_id, self.owner = client, account_id, owner
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(WRITER_THREADS)]
        for t in self.threads:
            t.start()

    def _run(self, index: int) -> None:
        for n in range(MAX_WRITES_PER_THREAD):
            if self.stop.is_set():
                return
            if (index + n) % 2:
                answer = call(self.client.seats.PurchaseSeats, seat_service_pb2.PurchaseSeatsRequest(
                    account_id=self.account_id, hub=SALES, tier=PROFESSIONAL, quantity=1,
                    request_id=new_request_id("inflight")), op="purchase", metadata=self.owner, timeout=OUTAGE_DEADLINE)
            else:
                answer = call(self.client.users.CreateUser, user_service_pb2.CreateUserRequest(
                    account_id=self.account_id, email=unique_email("inflight"), request_id=new_request_id("inflight")),
                    op="create_user", metadata=self.owner, timeout=OUTAGE_DEADLINE)
            with self.lock:
                self.answers.append(answer)
            if not answer.ok:
                return

    def count(self) -> int:
        with self.lock:
            return len(self.answers)

    def join(self) -> list[Answer]:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=OUTAGE_DEADLINE + 10)
        assert not any(t.is_alive() for t in self.threads), "a writer still runs after the outage"
        return list(self.answers)


class Watch:
    """A WatchSeatEvents stream kept open across the outage: it must end UNAVAILABLE, not hang."""

    def __init__(self, client: Client, account_id: str, owner: tuple[tuple[str, str], ...]) -> None:
        self.events = 0
        self.ended: tuple[str, str, str] | None = None
        self.ended_at = 0.0
        self.stream = client.seats.WatchSeatEvents(
            seat_service_pb2.WatchSeatEventsRequest(account_id=account_id), metadata=owner, timeout=WATCH_SECONDS
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for _ in self.stream:
                self.events += 1
            self.ended = ("OK", "", "the stream ended without a status")
        except grpc.RpcError as err:
            self.ended = describe(err)
        self.ended_at = time.monotonic()

    def wait_end(self, timeout: float) -> None:
        self.thread.join(timeout=timeout)

    def close(self) -> None:
        cancel(self.stream)
        self.thread.join(timeout=10)


def test_database_outage_gives_unavailable_and_the_server_recovers_by_itself(
    own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    """STORE_UNAVAILABLE while PostgreSQL is down (within the deadline, for reads and writes, on
    every handler thread); the same server answers again once PostgreSQL is back; a write
    refused during the outage can be re-sent with its request id and has its effect once."""
    began = time.monotonic()
    pg = own_postgres
    try:
        with serving(tmp_path, database_url=pg.url) as server, connected(server.address) as client:
            created = client.seats.CreateAccount(
                seat_service_pb2.CreateAccountRequest(
                    display_name="Outage", owner_email=unique_email("owner"), term_months=1,
                    subscriptions=[resources_pb2.Subscription(hub=SALES, tier=PROFESSIONAL, purchased_seats=1)],
                ),
                timeout=OUTAGE_DEADLINE,
            )
            account_id = created.account.account_id
            owner = actor(created.account.owner_user_id)
            user = client.users.CreateUser(
                user_service_pb2.CreateUserRequest(account_id=account_id, email=unique_email()),
                metadata=owner, timeout=OUTAGE_DEADLINE,
            ).user
            warm = burst(client, account_id, owner, user.user_id, timeout=OUTAGE_DEADLINE, attempts=1)
            assert all(t[-1].ok for t in warm), [t[-1].describe() for t in warm if not t[-1].ok]
            before_outage = replay_log(all_events(client, account_id))
            watch = Watch(client, account_id, owner)
            writers = Writers(client, account_id, owner)
            wait_until = time.monotonic() + OUTAGE_DEADLINE
            while writers.count() < 20 and time.monotonic() < wait_until:
                time.sleep(0.01)

            pg.stop_immediately()  # with writes in flight
            stopped_at = time.monotonic()
            down = [t[-1] for t in burst(client, account_id, owner, user.user_id, timeout=OUTAGE_DEADLINE, attempts=1)]
            held_purchase = seat_service_pb2.PurchaseSeatsRequest(
                account_id=account_id, hub=SALES, tier=PROFESSIONAL, quantity=2, request_id=new_request_id("held")
            )
            refused_purchase = call(client.seats.PurchaseSeats, held_purchase, op="purchase", metadata=owner,
                                    timeout=OUTAGE_DEADLINE)
            down.append(refused_purchase)
            down_figures = tally(down)
            print(f"\n[outage] database down: {down_figures}")
            watch.wait_end(WATCH_END_SECONDS)
            inflight = writers.join()
            inflight_figures = tally(inflight)
            print(f"[outage] writes running when the database stopped: {inflight_figures}")
            print(f"[outage] watch open across the stop: {watch.events} events, then {watch.ended}")
            assert watch.ended is not None and watch.ended[0] == "UNAVAILABLE", (
                f"a watch open when the database stopped did not end UNAVAILABLE within {WATCH_END_SECONDS}s: "
                f"{watch.ended}"
            )
            watch.close()
            wrong = [
                a.describe() for a in [*down, *inflight]
                if not a.ok and (a.code != "UNAVAILABLE" or a.reason not in ("STORE_UNAVAILABLE", ""))
            ]
            assert not wrong, "calls during the outage got other answers than UNAVAILABLE/STORE_UNAVAILABLE:\n" + (
                "\n".join([*wrong[:10], down_figures])
            )
            late = [a.describe() for a in down if a.seconds >= OUTAGE_DEADLINE]
            assert not late, "calls during the outage were not answered within their deadline:\n" + "\n".join(late[:10])

            pg.start()
            restarted_at = time.monotonic()
            recovery: list[Answer] = []
            request = seat_service_pb2.GetSeatSummaryRequest(account_id=account_id)
            while len(recovery) < RECOVERY_ATTEMPTS and time.monotonic() - restarted_at < RECOVERY_SECONDS:
                recovery.append(call(client.seats.GetSeatSummary, request, op="summary", timeout=OUTAGE_DEADLINE))
                if recovery[-1].ok:
                    break
                time.sleep(0.2)
            assert recovery and recovery[-1].ok, (
                f"the server did not answer OK within {RECOVERY_SECONDS}s of PostgreSQL's restart "
                f"({len(recovery)} attempts): {recovery[-1].describe() if recovery else 'no attempt'}\n"
                + server.log_text()[-3000:]
            )
            recovered_in = time.monotonic() - restarted_at

            after = burst(
                client, account_id, owner, user.user_id, timeout=OUTAGE_DEADLINE, attempts=MAX_ATTEMPTS_AFTER_RECOVERY
            )
            flat = [a for tried in after for a in tried]
            after_figures = tally(flat)
            print(f"[outage] back after {recovered_in:.2f}s ({len(recovery)} attempts); then {after_figures}")
            failed_after = [tried[-1].describe() for tried in after if not tried[-1].ok]
            assert not failed_after, (
                f"after the database came back, calls still failed {MAX_ATTEMPTS_AFTER_RECOVERY} times in a row:\n"
                + "\n".join(failed_after[:10]) + f"\n{after_figures}"
            )
            wrong_after = [a.describe() for a in flat if not a.ok and a.code != "UNAVAILABLE"]
            assert not wrong_after, "after recovery, failures other than UNAVAILABLE:\n" + "\n".join(wrong_after[:10])

            # I5 across the outage: the purchase refused while the database was down takes effect once now.
            again, twice = (
                call(client.seats.PurchaseSeats, held_purchase, op="purchase", metadata=owner, timeout=OUTAGE_DEADLINE)
                for _ in range(2)
            )
            assert again.ok and twice.ok and again.response == twice.response, (again.describe(), twice.describe())
            log = replay_log(all_events(client, account_id))
            assert log.events[: before_outage.last] == before_outage.events, "events from before the outage changed"
            assert log.events_of(held_purchase.request_id) == {
                ("SEATS_PURCHASED", "", SALES, PROFESSIONAL, 0, 2): 1
            }, f"the purchase re-sent after the outage made {dict(log.events_of(held_purchase.request_id))}"
            before_resend = log
            outage_ids = {a.request_id for a in down if a.request_id}
            leaked = [i for i in outage_ids if i in log.by_request and i != held_purchase.request_id]
            assert not leaked, f"writes refused during the outage took effect anyway: {leaked}"
            check_final_state(client, account_id, log)
            # The writes in flight when the database stopped: re-sent by request id, each has its effect once.
            resent = [
                call(getattr(client.users if a.op == "create_user" else client.seats,
                             type(a.request).__name__.removesuffix("Request")),
                     a.request, op=a.op, metadata=owner, timeout=OUTAGE_DEADLINE)
                for a in inflight
            ]
            assert all(r.ok for r in resent), [r.describe() for r in resent if not r.ok]
            for a, r in zip(inflight, resent, strict=True):
                assert not a.ok or a.response == r.response, f"I5: {a.request_id} answered OK, then differently"
            log = replay_log(all_events(client, account_id))
            check_answers_against_log(resent, log)
            check_final_state(client, account_id, log)
            lost = sum(1 for a in inflight if not a.ok and a.request_id in before_resend.by_request)
            assert server.process.poll() is None, "the server exited during the outage"
            first_failures = sum(1 for tried in after if not tried[0].ok)
            print(
                f"[outage] database stopped for {restarted_at - stopped_at:.1f}s: {len(down)} calls, all UNAVAILABLE "
                f"(slowest {max(a.seconds for a in down):.2f}s); recovered {recovered_in:.2f}s after restart; "
                f"{len(after)} calls after recovery, {first_failures} failed their first attempt; "
                f"{len(inflight)} writes running at the stop ({sum(1 for a in inflight if not a.ok)} refused, {lost} "
                f"of those had committed), all re-sent: one effect each; "
                f"{time.monotonic() - began:.1f}s in all"
            )
    finally:
        pg.ensure_running()


def test_unavailable_does_not_tell_clients_where_the_database_is(own_postgres: OwnPostgres, tmp_path: Path) -> None:
    """A STORE_UNAVAILABLE refusal goes to any client: it says the database cannot be reached and to
    retry, but not the driver's text with the database's host and port (that belongs in the log)."""
    pg = own_postgres
    with serving(tmp_path, database_url=pg.url) as server, connected(server.address) as client:
        created = client.seats.CreateAccount(
            seat_service_pb2.CreateAccountRequest(
                display_name="Outage", owner_email=unique_email("owner"), term_months=1,
                subscriptions=[resources_pb2.Subscription(hub=SALES, tier=PROFESSIONAL)],
            ),
            timeout=OUTAGE_DEADLINE,
        )
        pg.stop_immediately()
        try:
            answer = call(client.seats.GetSeatSummary,
                          seat_service_pb2.GetSeatSummaryRequest(account_id=created.account.account_id),
                          op="summary", timeout=OUTAGE_DEADLINE)
        finally:
            pg.ensure_running()
    assert answer.code == "UNAVAILABLE" and answer.reason == "STORE_UNAVAILABLE", answer.describe()
    told = [text for text in (str(pg.port), "127.0.0.1", "connection to server", "Is the server running")
            if text in answer.message]
    assert not told, f"the UNAVAILABLE message tells clients {told}: {answer.message!r}"
