"""SIGTERM under a write load: calls in flight finish within the grace period, new ones are
refused, nothing is half-written, and every request id keeps its single effect (I5)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from seats import RetryPolicy, SeatsClient, errors
from seats.v1 import resources_pb2

from tests.served import serving
from tests.toolkit import replay_log

GRACE = "5"
WRITERS = 6


def test_sigterm_under_load_loses_nothing(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'seats.db'}"
    answered: dict[str, int] = {}  # request id -> purchased count in the OK answer
    refused: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    with serving(tmp_path, database_url=database, flags=("--grace-seconds", GRACE)) as server:
        with SeatsClient(server.address) as system:
            account = system.create_account("Load", "owner@load.test", [("sales", "starter", 0)]).account
        owner = account.owner_user_id

        def write(worker: int) -> None:
            with SeatsClient(server.address, actor=owner, retry=RetryPolicy(max_attempts=1), timeout=10) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    request_id = f"w{worker}-{n}"
                    with lock:
                        sent.append(request_id)
                    try:
                        reply = client.purchase_seats(account.account_id, "sales", "starter", 1, request_id=request_id)
                    except errors.SeatsError as err:
                        assert err.code.name in ("UNAVAILABLE", "CANCELLED"), f"{request_id}: {err}"
                        with lock:
                            refused.append(request_id)
                        return
                    with lock:
                        answered[request_id] = reply.pool.purchased

        writers = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
        for thread in writers:
            thread.start()
        deadline = time.monotonic() + 20
        while len(answered) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        assert server.wait_for_exit(int(GRACE) + 10) == 0
        stop.set()
        for thread in writers:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in writers)

    print(f"shutdown under load: {len(sent)} purchases sent, {len(answered)} answered OK, {len(refused)} refused")
    assert len(answered) >= 50, f"only {len(answered)} purchases answered before the stop"
    # Every OK answer saw its own seat counted: the purchased counts are distinct.
    assert len(set(answered.values())) == len(answered)

    with serving(tmp_path, database_url=database) as again, SeatsClient(again.address, actor=owner) as client:
        # Re-sending every request id: the answered ones replay (no second seat); the others run now.
        for request_id in sent:
            reply = client.purchase_seats(account.account_id, "sales", "starter", 1, request_id=request_id)
            if request_id in answered:
                assert reply.pool.purchased == answered[request_id], request_id
        summary = client.get_seat_summary(account.account_id).pools[0]
        assert summary.purchased == len(sent)  # each request id had exactly one effect
        events = list(client.iter_seat_events(account.account_id))
        replay_log(events)  # I3, I4: numbered 1..n without gaps, every pool event adds up
        assert sum(e.quantity for e in events if e.type == resources_pb2.SEAT_EVENT_TYPE_SEATS_PURCHASED) == len(sent)
