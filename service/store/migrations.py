"""Versioned schema migrations. Each version is applied once, in order, in its own
transaction; the constraints back the rules (I1, I2, I3, S10, S16)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


# {blob} is the dialect's binary type.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "accounts, pools, users, assignments, events, charges, request records",
        (
            """CREATE TABLE accounts (
            account_id TEXT PRIMARY KEY,
            display_name TEXT NOT NULL,
            owner_user_id TEXT NOT NULL,
            currency_code TEXT NOT NULL,
            term_months INTEGER NOT NULL CHECK (term_months IN (1, 12)),
            term_anchor BIGINT NOT NULL,
            term_start BIGINT NOT NULL,
            renewal_time BIGINT NOT NULL,
            last_sequence BIGINT NOT NULL DEFAULT 0 CHECK (last_sequence >= 0),
            create_time BIGINT NOT NULL,
            CHECK (renewal_time > term_start)
        )""",
            "CREATE INDEX accounts_renewal_time ON accounts (renewal_time)",
            # I1: 0 <= assigned <= included + purchased.
            # I2: 0 <= pending_removal <= purchased - max(0, assigned - included).
            """CREATE TABLE seat_pools (
            account_id TEXT NOT NULL REFERENCES accounts (account_id),
            hub SMALLINT NOT NULL CHECK (hub IN (1, 2)),
            tier SMALLINT NOT NULL CHECK (tier BETWEEN 1 AND 4),
            included INTEGER NOT NULL CHECK (included >= 0),
            purchased INTEGER NOT NULL CHECK (purchased >= 0),
            assigned INTEGER NOT NULL CHECK (assigned >= 0 AND assigned <= included + purchased),
            pending_removal INTEGER NOT NULL CHECK (
                pending_removal >= 0 AND pending_removal <= purchased
                AND pending_removal <= included + purchased - assigned),
            PRIMARY KEY (account_id, hub, tier)
        )""",
            """CREATE TABLE users (
            user_id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts (account_id),
            email TEXT NOT NULL,
            email_key TEXT NOT NULL,
            display_name TEXT NOT NULL,
            super_admin BOOLEAN NOT NULL,
            edit_billing BOOLEAN NOT NULL,
            account_access BOOLEAN NOT NULL,
            version INTEGER NOT NULL,
            create_time BIGINT NOT NULL,
            update_time BIGINT NOT NULL,
            UNIQUE (account_id, email_key),
            UNIQUE (account_id, user_id)
        )""",
            # I3: one seat per user and hub, in a pool of the user's own account.
            # S10: a user holding a seat cannot be deleted (the foreign key refuses it).
            """CREATE TABLE seat_assignments (
            account_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            hub SMALLINT NOT NULL,
            tier SMALLINT NOT NULL,
            assign_time BIGINT NOT NULL,
            PRIMARY KEY (user_id, hub),
            FOREIGN KEY (account_id, user_id) REFERENCES users (account_id, user_id),
            FOREIGN KEY (account_id, hub, tier) REFERENCES seat_pools (account_id, hub, tier)
        )""",
            "CREATE INDEX seat_assignments_account ON seat_assignments (account_id, user_id, hub)",
            "CREATE INDEX seat_assignments_pool ON seat_assignments (account_id, hub, tier)",
            # I4: one ordered log per account, sequences unique.
            """CREATE TABLE seat_events (
            account_id TEXT NOT NULL REFERENCES accounts (account_id),
            sequence BIGINT NOT NULL CHECK (sequence > 0),
            event_type SMALLINT NOT NULL,
            actor TEXT NOT NULL,
            event_time BIGINT NOT NULL,
            request_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            hub SMALLINT NOT NULL,
            tier SMALLINT NOT NULL,
            previous_tier SMALLINT NOT NULL,
            quantity INTEGER NOT NULL,
            before_included INTEGER NOT NULL,
            before_purchased INTEGER NOT NULL,
            before_assigned INTEGER NOT NULL,
            before_pending INTEGER NOT NULL,
            after_included INTEGER NOT NULL,
            after_purchased INTEGER NOT NULL,
            after_assigned INTEGER NOT NULL,
            after_pending INTEGER NOT NULL,
            PRIMARY KEY (account_id, sequence)
        )""",
            # I6: integer minor units.
            """CREATE TABLE charges (
            charge_id TEXT PRIMARY KEY,
            account_id TEXT NOT NULL REFERENCES accounts (account_id),
            kind SMALLINT NOT NULL,
            hub SMALLINT NOT NULL,
            tier SMALLINT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity >= 0),
            unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
            amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
            currency_code TEXT NOT NULL,
            period_start BIGINT NOT NULL,
            period_end BIGINT NOT NULL,
            charge_time BIGINT NOT NULL,
            description TEXT NOT NULL
        )""",
            "CREATE INDEX charges_account_period ON charges (account_id, period_start, charge_time)",
            # I5: the first result of each request id, per account (or per system scope).
            """CREATE TABLE request_records (
            scope TEXT NOT NULL,
            request_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            response {blob} NOT NULL,
            create_time BIGINT NOT NULL,
            PRIMARY KEY (scope, request_id)
        )""",
            "CREATE INDEX request_records_create_time ON request_records (create_time)",
        ),
    ),
    Migration(
        2,
        "seat pool versions, for etags (AIP-154)",
        ("ALTER TABLE seat_pools ADD COLUMN version INTEGER NOT NULL DEFAULT 0",),
    ),
    Migration(
        3,
        "request records keep refusals (I5)",
        # The refusal a call that ran under a request id met, encoded by the domain; NULL when
        # the call succeeded and response holds its answer (every record made before this).
        ("ALTER TABLE request_records ADD COLUMN refusal TEXT",),
    ),
    Migration(
        4,
        "event outbox, relayed to a message bus",
        # The events a relay has yet to publish, one row per event, written in the transaction
        # that appends the event (when a bus is configured) and deleted once the bus has it.
        # The body is read from seat_events; the row only says what is left to send.
        (
            """CREATE TABLE event_outbox (
            account_id TEXT NOT NULL REFERENCES accounts (account_id),
            sequence BIGINT NOT NULL CHECK (sequence > 0),
            PRIMARY KEY (account_id, sequence)
        )""",
        ),
    ),
)
