"""Persistence: Peewee models, migrations and transactions."""

from .store import Store, open_store

__all__ = ["Store", "open_store"]
