"""Server configuration: defaults, then environment (SEATS_*), then flags."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields

DEFAULT_DATABASE_URL = "sqlite:///var/seats.db"


@dataclass(frozen=True)
class Config:
    address: str = "127.0.0.1:50051"
    database_url: str = DEFAULT_DATABASE_URL
    max_workers: int = 16
    max_concurrent_rpcs: int = 64
    receive_timeout_seconds: float = 10.0
    max_message_bytes: int = 4 * 1024 * 1024
    grace_seconds: float = 10.0
    price_book: str = ""
    sweep_interval_seconds: float = 60.0
    request_id_ttl_hours: float = 24.0
    watch_poll_seconds: float = 0.5
    # Each open watch holds one of the max_workers handler threads for its whole life (the
    # server is a synchronous one), and counts against max_concurrent_rpcs. The server-wide
    # cap stays at half the threads: with 16 workers, 8 watches leave 8 threads for unary
    # calls, which hold one for milliseconds but wait on the database (round trips, the group
    # commit's fsync), so fewer threads would cut write throughput; the 56 other calls that
    # max_concurrent_rpcs admits queue for those 8 threads. Growing this default alone would
    # take threads from unary calls; to serve more watches, raise max_workers with it (keep
    # it at most half of max_workers). Fairness between tenants comes from the per-account
    # cap, not from a bigger server-wide one.
    max_watch_streams: int = 8
    # Open watches of one account on this server: a tenant at its cap is refused, the others
    # keep watching up to max_watch_streams. Four covers a few processes of one tenant that
    # each follow the account (a SeatCache holds one watch).
    max_watch_streams_per_account: int = 4
    # A watch's longest life: then the server ends it (UNAVAILABLE / WATCH_EXPIRED) and the
    # client resumes from the last sequence it received. It bounds how long one admission (its
    # token, actor and replica) lasts and lets watches move to new replicas.
    watch_max_seconds: float = 1800.0
    reuse_port: bool = False
    log_level: str = "INFO"
    auth_tokens_file: str = ""
    insecure: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    metrics_address: str = ""

    @staticmethod
    def parse(argv: list[str] | None = None, env: dict[str, str] | None = None) -> tuple[str, Config]:
        """Returns the command (serve or migrate) and the configuration."""
        env = dict(os.environ) if env is None else env
        defaults = Config()
        parser = argparse.ArgumentParser(prog="seats-server", description="The seat service.")
        parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
        for f in fields(Config):
            flag = "--" + f.name.replace("_", "-")
            env_value = env.get("SEATS_" + f.name.upper())
            default = getattr(defaults, f.name)
            if f.type == "bool" or isinstance(default, bool):
                parser.add_argument(
                    flag,
                    action=argparse.BooleanOptionalAction,
                    default=env_value.lower() in ("1", "true", "yes") if env_value else default,
                    help=f"env SEATS_{f.name.upper()} (default {default})",
                )
            else:
                kind = type(default)
                parser.add_argument(
                    flag,
                    type=kind,
                    default=kind(env_value) if env_value else default,
                    help=f"env SEATS_{f.name.upper()} (default {default!r})",
                )
        ns = parser.parse_args(argv)
        values = {f.name: getattr(ns, f.name) for f in fields(Config)}
        return ns.command, Config(**values)
