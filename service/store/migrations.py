"""Versioned schema migrations. Each version is applied once, in order, in its own
transaction; the constraints back the rules (I1, I2, I3, S10, S16). On PostgreSQL a migration
may build indexes before its transaction and run idempotent statements after it, outside one,
so that a change of keys on a live database never holds a table's lock for an index build."""

from __future__ import annotations

from dataclasses import dataclass

DIALECTS = ("sqlite", "postgres")


@dataclass(frozen=True)
class Migration:
    """One schema version. ``statements`` run on both databases; ``sqlite`` and ``postgres``
    run after them, on that database only: what one dialect can do in place (switch a primary
    key, say) the other may have to do another way (rebuild the table)."""

    version: int
    name: str
    statements: tuple[str, ...] = ()
    sqlite: tuple[str, ...] = ()
    postgres: tuple[str, ...] = ()
    postgres_indexes: tuple[tuple[str, str], ...] = ()
    """PostgreSQL indexes built before the migration's transaction, without blocking writes:
    (name, ``CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS name ...``). A build that failed
    half way leaves an invalid index; the store drops it and builds again."""
    postgres_after: tuple[str, ...] = ()
    """PostgreSQL statements run after the transaction, outside one, at every migrate: each must
    be idempotent (``VALIDATE CONSTRAINT`` of a foreign key added NOT VALID, say), so that a
    process that died between the commit and them leaves them to the next start."""

    def statements_for(self, dialect: str) -> tuple[str, ...]:
        """The statements to run on dialect, in order. An unknown dialect is an error rather
        than a migration that silently runs only the shared half."""
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}: migrations know {', '.join(DIALECTS)}")
        return self.statements + (self.sqlite if dialect == "sqlite" else self.postgres)


# The columns of the tables migration 5 rebuilds on SQLite, as migration 1 made them.
_USER_COLUMNS = (
    "user_id, account_id, email, email_key, display_name, super_admin, edit_billing, account_access, version, "
    "create_time, update_time"
)
_ASSIGNMENT_COLUMNS = "account_id, user_id, hub, tier, assign_time"
_CHARGE_COLUMNS = (
    "charge_id, account_id, kind, hub, tier, quantity, unit_price_minor, amount_minor, currency_code, "
    "period_start, period_end, charge_time, description"
)


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
    Migration(
        5,
        "keys lead with account_id, to shard by account",
        # Every primary, unique and foreign key leads with account_id, the column a sharded
        # PostgreSQL (Citus) distributes rows by, so that each key is checked on one shard.
        # request_records keeps its column `scope`: it holds the account id (or "system" for
        # calls that name no account yet) and leads its key already; renaming it would break
        # the statements of replicas still running the previous release while this one
        # migrates at start. Its distribution column is `scope`.
        #
        # PostgreSQL switches the keys in place, safe on a live database: the new unique
        # indexes are built first, CONCURRENTLY, outside the transaction (writes go on while
        # they build); then, in the transaction, each primary key moves onto its index in one
        # statement (users needs a new index too: PRIMARY KEY USING INDEX takes no index a
        # constraint owns, as its UNIQUE's is). The foreign key from seat_assignments is bound
        # to users' UNIQUE (account_id, user_id) and keeps it from being dropped; so the foreign
        # key is dropped, that constraint (now the primary key's twin) goes, and the foreign key
        # is made again on the same columns, with the same (default) actions, where the only
        # index it can bind to is the new primary key: NOT VALID, so that the transaction, which
        # holds the tables' locks, scans nothing; it is validated after the commit, under a lock
        # that lets writes go on (the rows it checks were checked by the old key all along, and
        # new rows are checked from the start). seat_assignments_account has the new primary
        # key's columns and goes too. The transaction itself only moves catalog entries: the
        # tables are locked for milliseconds, not for an index build.
        postgres_indexes=(
            (
                "users_account_user",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_account_user ON users (account_id, user_id)",
            ),
            (
                "seat_assignments_account_user_hub",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS seat_assignments_account_user_hub "
                "ON seat_assignments (account_id, user_id, hub)",
            ),
            (
                "charges_account_charge",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS charges_account_charge "
                "ON charges (account_id, charge_id)",
            ),
        ),
        postgres=(
            "ALTER TABLE users DROP CONSTRAINT users_pkey, "
            "ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_account_user",
            "ALTER TABLE seat_assignments DROP CONSTRAINT seat_assignments_pkey, "
            "ADD CONSTRAINT seat_assignments_pkey PRIMARY KEY USING INDEX seat_assignments_account_user_hub",
            "ALTER TABLE charges DROP CONSTRAINT charges_pkey, "
            "ADD CONSTRAINT charges_pkey PRIMARY KEY USING INDEX charges_account_charge",
            "ALTER TABLE seat_assignments DROP CONSTRAINT seat_assignments_account_id_user_id_fkey",
            "ALTER TABLE users DROP CONSTRAINT users_account_id_user_id_key",
            "ALTER TABLE seat_assignments ADD CONSTRAINT seat_assignments_account_id_user_id_fkey "
            "FOREIGN KEY (account_id, user_id) REFERENCES users (account_id, user_id) NOT VALID",
            "DROP INDEX seat_assignments_account",
        ),
        postgres_after=("ALTER TABLE seat_assignments VALIDATE CONSTRAINT seat_assignments_account_id_user_id_fkey",),
        # SQLite cannot alter a primary key: the tables are rebuilt (same columns, CHECKs and
        # foreign keys; the ids are NOT NULL, as PostgreSQL's primary keys made them), in this
        # migration's transaction, with foreign keys enforced throughout. The order matters:
        # dropping users while seat_assignments still refers to it fails (its implicit DELETE
        # breaks that foreign key, and PRAGMA foreign_keys cannot be turned off inside a
        # transaction), so the new seat_assignments refers to the new users table, the old
        # child is dropped before the old parent, and renaming users_next to users rewrites the
        # reference. Every copied row is checked against its parents on the way in.
        sqlite=(
            """CREATE TABLE users_next (
            user_id TEXT NOT NULL,
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
            PRIMARY KEY (account_id, user_id),
            UNIQUE (account_id, email_key)
        )""",
            f"INSERT INTO users_next ({_USER_COLUMNS}) SELECT {_USER_COLUMNS} FROM users",
            """CREATE TABLE seat_assignments_next (
            account_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            hub SMALLINT NOT NULL,
            tier SMALLINT NOT NULL,
            assign_time BIGINT NOT NULL,
            PRIMARY KEY (account_id, user_id, hub),
            FOREIGN KEY (account_id, user_id) REFERENCES users_next (account_id, user_id),
            FOREIGN KEY (account_id, hub, tier) REFERENCES seat_pools (account_id, hub, tier)
        )""",
            f"INSERT INTO seat_assignments_next ({_ASSIGNMENT_COLUMNS}) "
            f"SELECT {_ASSIGNMENT_COLUMNS} FROM seat_assignments",
            "DROP TABLE seat_assignments",
            "DROP TABLE users",
            "ALTER TABLE users_next RENAME TO users",
            "ALTER TABLE seat_assignments_next RENAME TO seat_assignments",
            "CREATE INDEX seat_assignments_pool ON seat_assignments (account_id, hub, tier)",
            """CREATE TABLE charges_next (
            charge_id TEXT NOT NULL,
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
            description TEXT NOT NULL,
            PRIMARY KEY (account_id, charge_id)
        )""",
            f"INSERT INTO charges_next ({_CHARGE_COLUMNS}) SELECT {_CHARGE_COLUMNS} FROM charges",
            "DROP TABLE charges",
            "ALTER TABLE charges_next RENAME TO charges",
            "CREATE INDEX charges_account_period ON charges (account_id, period_start, charge_time)",
        ),
    ),
    Migration(
        6,
        "seat activity and idle-seat reclaim",
        (
            # When the holder last used the seat (RecordSeatActivity); NULL: never reported.
            "ALTER TABLE seat_assignments ADD COLUMN last_activity_time BIGINT",
            # A pool's policy: 0, never reclaim; else seats idle that many days are unassigned
            # by the sweep. Less than a week is refused: a seat idle over a weekend is not idle.
            "ALTER TABLE seat_pools ADD COLUMN idle_reclaim_days INTEGER NOT NULL DEFAULT 0 "
            "CHECK (idle_reclaim_days = 0 OR idle_reclaim_days BETWEEN 7 AND 3650)",
            # The sweep's question, "which pools reclaim at all", answered without a scan.
            "CREATE INDEX seat_pools_reclaiming ON seat_pools (account_id, hub, tier) WHERE idle_reclaim_days > 0",
        ),
    ),
    Migration(
        7,
        "seat requests and the waiting list",
        (
            # Users' requests for seats. number orders an account's requests: waiting ones are
            # granted in it. No foreign key to users: a deleted user's requests stay, cancelled.
            """CREATE TABLE seat_requests (
            account_id TEXT NOT NULL REFERENCES accounts (account_id),
            seat_request_id TEXT NOT NULL,
            number BIGINT NOT NULL CHECK (number > 0),
            user_id TEXT NOT NULL,
            hub SMALLINT NOT NULL CHECK (hub IN (1, 2)),
            tier SMALLINT NOT NULL CHECK (tier BETWEEN 1 AND 4),
            state SMALLINT NOT NULL CHECK (state BETWEEN 1 AND 5),
            create_time BIGINT NOT NULL,
            update_time BIGINT NOT NULL,
            requested_by TEXT NOT NULL,
            decided_by TEXT NOT NULL DEFAULT '',
            reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (account_id, seat_request_id),
            UNIQUE (account_id, number)
        )""",
            # A user has at most one open (pending or waiting) request per hub.
            "CREATE UNIQUE INDEX seat_requests_one_open ON seat_requests (account_id, user_id, hub) "
            "WHERE state IN (1, 2)",
            # The waiting list of a pool, oldest first.
            "CREATE INDEX seat_requests_waiting ON seat_requests (account_id, hub, tier, number) WHERE state = 2",
            # The grant that carried a request, and the request's own events.
            "ALTER TABLE seat_events ADD COLUMN seat_request_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE seat_pools ADD COLUMN auto_approve_requests BOOLEAN NOT NULL DEFAULT FALSE",
        ),
        # How many requests wait for a seat of the pool: a counter, so that a write that frees a
        # seat knows without a query whether anyone waits. Requests wait only while no seat is
        # free: the waiting list is served in the transaction that frees one.
        sqlite=(
            "ALTER TABLE seat_pools ADD COLUMN waiting_requests INTEGER NOT NULL DEFAULT 0 "
            "CHECK (waiting_requests >= 0 AND (waiting_requests = 0 "
            "OR included + purchased - assigned - pending_removal = 0))",
        ),
        postgres=(
            "ALTER TABLE seat_pools ADD COLUMN waiting_requests INTEGER NOT NULL DEFAULT 0 "
            "CHECK (waiting_requests >= 0)",
            "ALTER TABLE seat_pools ADD CONSTRAINT seat_pools_wait_only_when_full "
            "CHECK (waiting_requests = 0 OR included + purchased - assigned - pending_removal = 0)",
        ),
    ),
    Migration(
        8,
        "invoices",
        (
            # One invoice per ended term, issued when its renewal is applied, kept for good. The
            # total is the sum of the charges that name it (I6: integer minor units).
            """CREATE TABLE invoices (
            account_id TEXT NOT NULL REFERENCES accounts (account_id),
            invoice_id TEXT NOT NULL,
            number BIGINT NOT NULL CHECK (number > 0),
            period_start BIGINT NOT NULL,
            period_end BIGINT NOT NULL CHECK (period_end > period_start),
            issue_time BIGINT NOT NULL,
            currency_code TEXT NOT NULL,
            total_minor BIGINT NOT NULL CHECK (total_minor >= 0),
            line_count INTEGER NOT NULL CHECK (line_count >= 0),
            PRIMARY KEY (account_id, invoice_id),
            UNIQUE (account_id, number),
            UNIQUE (account_id, period_start)
        )""",
            # The invoice a charge is billed on; NULL while its term runs.
            "ALTER TABLE charges ADD COLUMN invoice_id TEXT",
            "CREATE INDEX charges_account_invoice ON charges (account_id, invoice_id)",
            # The invoice an INVOICE_ISSUED event announces.
            "ALTER TABLE seat_events ADD COLUMN invoice_id TEXT NOT NULL DEFAULT ''",
        ),
    ),
)
