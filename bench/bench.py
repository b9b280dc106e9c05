"""Cost per call of the hot RPCs, against an empty grpcio handler on the same machine.

    make bench                       # SQLite, 2000 calls per RPC
    python -m bench.bench --calls 500 --database-url postgresql://postgres@127.0.0.1:5432/test?schema=bench

Client and servers run in this process, so "cpu us/call" is the CPU of both ends together: compare each
RPC with the empty handler's line, which is the floor gRPC itself sets.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from seats import SeatsClient

from service.config import Config
from service.server import create_server
from service.store import open_store


@dataclass(frozen=True)
class Result:
    name: str
    calls: int
    p50_us: float
    p99_us: float
    cpu_us: float


def measure(name: str, call: Callable[[], object], calls: int) -> Result:
    for _ in range(min(100, calls)):  # warm up connections and caches
        call()
    latencies = []
    cpu_start = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1e6)
    cpu = (time.process_time() - cpu_start) * 1e6 / calls
    latencies.sort()
    return Result(name, calls, statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], cpu)


def empty_server() -> tuple[grpc.Server, int]:
    """A grpcio server whose one unary method returns its request: the floor."""

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler("bench.Empty", {"Call": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    store = open_store(url)
    store.migrate()
    server, port = create_server(Config(address="127.0.0.1:0", database_url=url, sweep_interval_seconds=0), store)
    server.start()
    floor, floor_port = empty_server()
    results = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{floor_port}") as channel:
            empty = channel.unary_unary("/bench.Empty/Call")
            results.append(measure("empty grpcio handler", lambda: empty(b"", timeout=10), args.calls))
        with SeatsClient(f"127.0.0.1:{port}") as system:
            account = system.create_account(
                "Bench", "owner@bench.test", [("sales", "professional", 5)], term_months=12
            ).account
            seats = system.with_actor(account.owner_user_id)
            a = account.account_id
            user = seats.create_user(a, "user@bench.test").user.user_id
            toggle = iter(range(10**9))

            def assign_or_unassign() -> object:
                if next(toggle) % 2 == 0:
                    return seats.assign_seat(a, user, "sales", "professional")
                return seats.unassign_seat(a, user, "sales")

            results.append(measure("GetSeatSummary", lambda: seats.get_seat_summary(a), args.calls))
            results.append(measure("GetUser", lambda: seats.get_user(a, user), args.calls))
            results.append(measure("ListUsers (page of 2)", lambda: seats.list_users(a, page_size=2), args.calls))
            results.append(measure("AssignSeat / UnassignSeat", assign_or_unassign, args.calls))
            results.append(
                measure(
                    "PurchaseSeats (1 seat)",
                    lambda: seats.purchase_seats(a, "sales", "professional", 1),
                    min(args.calls, 5000),
                )
            )
    finally:
        server.stop(None).wait()
        floor.stop(None).wait()
        store.drop_schema()
        store.close()
    print(f"{'RPC':28} {'calls':>6} {'p50 us':>8} {'p99 us':>8} {'cpu us/call':>12}  ({url.split('@')[-1]})")
    for r in results:
        print(f"{r.name:28} {r.calls:>6} {r.p50_us:>8.0f} {r.p99_us:>8.0f} {r.cpu_us:>12.0f}")


if __name__ == "__main__":
    main()
