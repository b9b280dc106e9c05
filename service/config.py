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
    max_message_bytes: int = 4 * 1024 * 1024
    grace_seconds: float = 10.0
    price_book: str = ""
    sweep_interval_seconds: float = 60.0
    request_id_ttl_hours: float = 24.0
    watch_poll_seconds: float = 0.5
    max_watch_streams: int = 8
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
