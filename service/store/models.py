"""Peewee models over the tables that migrations.py creates. Built per database, so two
stores (say SQLite and PostgreSQL) can live in one process. The keys are those of the latest
migration: every one leads with the account (see migration 5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee as pw


@dataclass(frozen=True)
class Models:
    Account: Any
    SeatPool: Any
    User: Any
    SeatAssignment: Any
    SeatEvent: Any
    Charge: Any
    RequestRecord: Any
    SchemaMigration: Any


def build_models(db: pw.Database) -> Models:
    class Base(pw.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class Account(Base):
        account_id = pw.TextField(primary_key=True)
        display_name = pw.TextField()
        owner_user_id = pw.TextField()
        currency_code = pw.TextField()
        term_months = pw.IntegerField()
        term_anchor = pw.BigIntegerField()
        term_start = pw.BigIntegerField()
        renewal_time = pw.BigIntegerField()
        last_sequence = pw.BigIntegerField()
        create_time = pw.BigIntegerField()

        class Meta:
            table_name = "accounts"

    class SeatPool(Base):
        account_id = pw.TextField()
        hub = pw.SmallIntegerField()
        tier = pw.SmallIntegerField()
        included = pw.IntegerField()
        purchased = pw.IntegerField()
        assigned = pw.IntegerField()
        pending_removal = pw.IntegerField()
        version = pw.IntegerField()

        class Meta:
            table_name = "seat_pools"
            primary_key = pw.CompositeKey("account_id", "hub", "tier")

    class User(Base):
        user_id = pw.TextField()
        account_id = pw.TextField()
        email = pw.TextField()
        email_key = pw.TextField()
        display_name = pw.TextField()
        super_admin = pw.BooleanField()
        edit_billing = pw.BooleanField()
        account_access = pw.BooleanField()
        version = pw.IntegerField()
        create_time = pw.BigIntegerField()
        update_time = pw.BigIntegerField()

        class Meta:
            table_name = "users"
            primary_key = pw.CompositeKey("account_id", "user_id")

    class SeatAssignment(Base):
        account_id = pw.TextField()
        user_id = pw.TextField()
        hub = pw.SmallIntegerField()
        tier = pw.SmallIntegerField()
        assign_time = pw.BigIntegerField()

        class Meta:
            table_name = "seat_assignments"
            primary_key = pw.CompositeKey("account_id", "user_id", "hub")

    class SeatEvent(Base):
        account_id = pw.TextField()
        sequence = pw.BigIntegerField()
        event_type = pw.SmallIntegerField()
        actor = pw.TextField()
        event_time = pw.BigIntegerField()
        request_id = pw.TextField()
        user_id = pw.TextField()
        hub = pw.SmallIntegerField()
        tier = pw.SmallIntegerField()
        previous_tier = pw.SmallIntegerField()
        quantity = pw.IntegerField()
        before_included = pw.IntegerField()
        before_purchased = pw.IntegerField()
        before_assigned = pw.IntegerField()
        before_pending = pw.IntegerField()
        after_included = pw.IntegerField()
        after_purchased = pw.IntegerField()
        after_assigned = pw.IntegerField()
        after_pending = pw.IntegerField()

        class Meta:
            table_name = "seat_events"
            primary_key = pw.CompositeKey("account_id", "sequence")

    class Charge(Base):
        charge_id = pw.TextField()
        account_id = pw.TextField()
        kind = pw.SmallIntegerField()
        hub = pw.SmallIntegerField()
        tier = pw.SmallIntegerField()
        quantity = pw.IntegerField()
        unit_price_minor = pw.BigIntegerField()
        amount_minor = pw.BigIntegerField()
        currency_code = pw.TextField()
        period_start = pw.BigIntegerField()
        period_end = pw.BigIntegerField()
        charge_time = pw.BigIntegerField()
        description = pw.TextField()

        class Meta:
            table_name = "charges"
            primary_key = pw.CompositeKey("account_id", "charge_id")

    class RequestRecord(Base):
        scope = pw.TextField()
        request_id = pw.TextField()
        fingerprint = pw.TextField()
        response = pw.BlobField()
        refusal = pw.TextField(null=True)
        create_time = pw.BigIntegerField()

        class Meta:
            table_name = "request_records"
            # scope is the account id (or "system"): this table's distribution column.
            primary_key = pw.CompositeKey("scope", "request_id")

    class SchemaMigration(Base):
        version = pw.IntegerField(primary_key=True)
        name = pw.TextField()
        applied_at = pw.BigIntegerField()

        class Meta:
            table_name = "schema_migrations"

    return Models(Account, SeatPool, User, SeatAssignment, SeatEvent, Charge, RequestRecord, SchemaMigration)
