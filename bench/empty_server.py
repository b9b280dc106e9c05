"""The floor: a grpcio server with the seat server's model and a handler that does nothing.

    python -m bench.empty_server --address 127.0.0.1:0 --metrics-address 127.0.0.1:9101

Same server model as service/server.py (a sync grpc.server on a thread pool of
Config().max_workers, maximum_concurrent_rpcs=Config().max_concurrent_rpcs, no reuse-port), on
grpcio's stock thread pool: the baseline every ratio of `make bench` divides by. With
--admission it runs on the seat server's admission pool instead (service/admission.py), which
answers faster; the README's Speed section gives both.
A generic handler answers every unary method, whatever its path, with an empty message, so
h2load sends it the very bytes it sends the seat server. Answers are counted like the
service counts them, in grpc_server_handled_total, served as Prometheus text on
--metrics-address. One JSON line on stderr says where it serves, as the seat server's log does.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from concurrent import futures
from types import FrameType

import grpc
from prometheus_client import CollectorRegistry, Counter, start_http_server

from service.admission import WorkerPool
from service.config import Config


class EmptyHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Any /package.Service/Method: read the request bytes, answer an empty message."""

    def __init__(self, handled: Counter) -> None:
        self._handled = handled

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:  # type: ignore[type-arg]
        service_name, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        counter = self._handled.labels("unary", service_name, method, "OK")

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            counter.inc()
            return b""

        return grpc.unary_unary_rpc_method_handler(answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1:0", help="where to serve gRPC (port 0 picks one)")
    parser.add_argument("--metrics-address", required=True, help="host:port of the Prometheus text endpoint")
    parser.add_argument(
        "--admission",
        action="store_true",
        help="run on the seat server's admission pool (service/admission.py) instead of grpcio's stock one",
    )
    args = parser.parse_args(argv)

    registry = CollectorRegistry()
    handled = Counter(
        "grpc_server_handled_total",
        "RPCs completed on the server, by status code.",
        ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        registry=registry,
    )
    metrics_host, _, metrics_port = args.metrics_address.rpartition(":")
    start_http_server(int(metrics_port), addr=metrics_host, registry=registry)

    config = Config()
    pool: futures.ThreadPoolExecutor = futures.ThreadPoolExecutor(max_workers=config.max_workers)
    limit: int | None = config.max_concurrent_rpcs
    if args.admission:
        pool = WorkerPool(config.max_workers, config.receive_timeout_seconds, config.max_concurrent_rpcs)
        limit = None
    server = grpc.server(
        pool,
        maximum_concurrent_rpcs=limit,
        options=[("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers((EmptyHandler(handled),))
    port = server.add_insecure_port(args.address)
    if port == 0:
        print(json.dumps({"level": "ERROR", "message": f"cannot listen on {args.address}"}), file=sys.stderr)
        return 2
    server.start()
    print(json.dumps({"level": "INFO", "message": "serving", "port": port}), file=sys.stderr, flush=True)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping.wait(1.0):
        pass
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
