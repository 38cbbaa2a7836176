"""The schema as one numbered list of migrations, the same for both engines.

Each database records the migrations applied to it in `schema_migrations` (version, name,
applied at). On open, the engine takes its migration lock (SQLite: BEGIN IMMEDIATE;
PostgreSQL: an advisory lock and a transaction), and `migrate` applies, in order, every
migration the table does not list, each in that transaction; several processes starting at
once apply each migration once. A database newer than this code (a version it does not
know) is refused rather than written to.

Migration 1 is the schema of release 0.1.0 exactly. A database made by that release (or
earlier) has no `schema_migrations`: migration 1's statements all say IF NOT EXISTS, so it
is applied to it as to an empty one (creating only what an older release left out) and the
database is recorded at version 1 ("adopted").

To add a migration: append `Migration(N, "what it does", sql)` to MIGRATIONS with the next
number (the list must stay 1, 2, 3...: host_tests/test_server_storage.py checks it), never
edit one that has shipped. `sql` is run by both engines; write it with the
`{int}`, `{real}`, `{bytes}`, `{serial}` (an auto-numbered primary key) and `{rowid}` (a
table's insertion order, first in its column list) words of `TYPES` where the engines
differ, and put what only one engine needs in `sqlite=` or `postgres=`. Then give db.Store
the queries that use it.
"""

import time
from dataclasses import dataclass

# The DDL words of each engine (engine.Dialect.types).
TYPES = {
    "sqlite": {
        "int": "INTEGER",
        "real": "REAL",
        "bytes": "BLOB",
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "rowid": "",  # every SQLite table has one
    },
    "postgres": {
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",
        "bytes": "BYTEA",
        "serial": "BIGSERIAL PRIMARY KEY",
        "rowid": "rowid BIGSERIAL,",
    },
}

# The tables a device download's answer depends on: a committed change to one of them moves
# the engine's generation, and the download path drops what it kept (device.Grants).
WATCHED = ("vendors", "models", "clients", "sns", "content")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str = ""  # both engines
    sqlite: str = ""  # SQLite only, after `sql`
    postgres: str = ""  # PostgreSQL only, after `sql`

    def text(self, dialect):
        own = self.sqlite if dialect.name == "sqlite" else self.postgres
        return (self.sql + "\n" + own).format(**dialect.types)


_V1 = """
CREATE TABLE IF NOT EXISTS clients (
    {rowid}
    rid TEXT PRIMARY KEY,
    parent TEXT,
    kind TEXT NOT NULL,             -- 'vendor' or 'device'
    cik_hash TEXT UNIQUE,           -- NULL while disabled
    secret TEXT,                    -- vendor CIK; device CIK until activated
    state TEXT NOT NULL,            -- vendor: 'active'; device: notactivated/activated/disabled
    enabled_at {int} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS clients_parent ON clients(parent);
CREATE TABLE IF NOT EXISTS vendors (
    {rowid}
    name TEXT PRIMARY KEY,
    rid TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS tokens (
    {rowid}
    vendor_rid TEXT NOT NULL,
    tid TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    secret TEXT NOT NULL,
    PRIMARY KEY (vendor_rid, tid)
);
CREATE TABLE IF NOT EXISTS models (
    {rowid}
    id {serial},
    vendor_rid TEXT NOT NULL,
    name TEXT NOT NULL,
    template_kind TEXT NOT NULL,    -- 'rid' or 'code'
    template TEXT NOT NULL,
    options TEXT NOT NULL,          -- JSON list
    UNIQUE (vendor_rid, name)
);
CREATE INDEX IF NOT EXISTS models_name ON models(name);
CREATE TABLE IF NOT EXISTS sns (
    {rowid}
    model_id {int} NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    sn TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '',
    client_rid TEXT,
    enabled_by TEXT,
    PRIMARY KEY (model_id, sn)
);
CREATE INDEX IF NOT EXISTS sns_client ON sns(client_rid);
CREATE TABLE IF NOT EXISTS ranges (
    {rowid}
    id {serial},
    model_id {int} NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    spec TEXT NOT NULL              -- canonical JSON of one range object
);
CREATE INDEX IF NOT EXISTS ranges_model ON ranges(model_id);
CREATE TABLE IF NOT EXISTS actlog (
    {rowid}
    id {serial},
    model_id {int} NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    sn TEXT NOT NULL,
    ts {int} NOT NULL,
    conn TEXT NOT NULL,
    what TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actlog_sn ON actlog(model_id, sn, id);
CREATE TABLE IF NOT EXISTS content (
    {rowid}
    model_id {int} NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    cid TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '',
    protected {int} NOT NULL DEFAULT 0,
    ctype TEXT NOT NULL DEFAULT '',
    size {int} NOT NULL DEFAULT 0,
    updated {int} NOT NULL DEFAULT 0,
    blob TEXT,
    PRIMARY KEY (model_id, cid)
);
CREATE TABLE IF NOT EXISTS groups (
    {rowid}
    model_id {int} NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    gid TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model_id, gid)
);
CREATE TABLE IF NOT EXISTS members (
    {rowid}
    model_id {int} NOT NULL,
    gid TEXT NOT NULL,
    type TEXT NOT NULL,
    mid TEXT NOT NULL,
    expire {int} NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model_id, gid, type, mid),
    FOREIGN KEY (model_id, gid) REFERENCES groups(model_id, gid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS members_mid ON members(model_id, type, mid);
CREATE TABLE IF NOT EXISTS shares (
    {rowid}
    model_id {int} NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    vendor_name TEXT NOT NULL,
    PRIMARY KEY (model_id, vendor_name)
);
CREATE TABLE IF NOT EXISTS data (
    {rowid}
    id {serial},
    client_rid TEXT NOT NULL,
    alias TEXT NOT NULL,
    ts {int} NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS data_alias ON data(client_rid, alias, id);
CREATE TABLE IF NOT EXISTS ui_sessions (
    {rowid}
    id_hash TEXT PRIMARY KEY,       -- SHA-256 of the dashboard's session cookie
    vendor_rid TEXT NOT NULL,
    expire {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS jsonp_tokens (
    {rowid}
    token_hash TEXT PRIMARY KEY,
    client_rid TEXT NOT NULL,
    spec TEXT NOT NULL,
    expire {int} NOT NULL
);
-- What each serial number's device last told (fleetstatus.py): one row per sn, kept
-- beside the history in `data`, so that a fleet listing or a rollout count is one query.
CREATE TABLE IF NOT EXISTS devstatus (
    {rowid}
    model_id {int} NOT NULL,
    sn TEXT NOT NULL,
    last_seen {int},                -- the last device call (throttled per process)
    address TEXT,                   -- the address that call came from
    reported {int},                 -- the time of the last report (alias write)
    state TEXT,                     -- the reported values, newest of each
    version TEXT,
    content TEXT,
    error TEXT,
    error_at {int},                 -- when `error` was reported
    boots {int},
    rollbacks {int},
    progress {int},                 -- percent; NULL unless the last state was downloading
    target TEXT,                    -- the version being downloaded or applied
    PRIMARY KEY (model_id, sn),
    FOREIGN KEY (model_id, sn) REFERENCES sns(model_id, sn) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS devstatus_version ON devstatus(model_id, version);
CREATE INDEX IF NOT EXISTS devstatus_state ON devstatus(model_id, state);
-- the dashboard's pages of one version, in sn order (keyset), whatever the fleet's size
CREATE INDEX IF NOT EXISTS devstatus_version_sn ON devstatus(model_id, version, sn);
-- failed activations per address in a sliding minute, shared by workers and instances
CREATE TABLE IF NOT EXISTS act_fails (address TEXT NOT NULL, ts {real} NOT NULL);
CREATE INDEX IF NOT EXISTS act_fails_a ON act_fails(address, ts);
"""

# SQLite's change counter: one row, moved by a trigger on every change to a WATCHED table,
# whichever process makes it.
_V1_SQLITE = """
CREATE TABLE IF NOT EXISTS generation (n INTEGER NOT NULL);
INSERT INTO generation SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM generation);
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS gen_{table}_{op.lower()} AFTER {op} ON {table} "
    "BEGIN UPDATE generation SET n = n + 1; END;\n"
    for table in WATCHED
    for op in ("INSERT", "UPDATE", "DELETE")
)

# PostgreSQL keeps content blobs in the database (pgblobs.py).
_V1_POSTGRES = """
CREATE TABLE IF NOT EXISTS pg_blobs (
    id TEXT PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS blob_chunks (
    blob TEXT NOT NULL,
    idx BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (blob, idx)
);
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
"""

# PostgreSQL's change notification: every statement that changes a WATCHED table notifies
# channel `exoprov_changed` at commit, which every instance LISTENs to (pg_engine.py).
_V2_POSTGRES = """
CREATE OR REPLACE FUNCTION exoprov_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('exoprov_changed', '');
    RETURN NULL;
END $$;
""" + "".join(
    f"CREATE TRIGGER exoprov_changed_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
    "FOR EACH STATEMENT EXECUTE FUNCTION exoprov_changed();\n"
    for table in WATCHED
)

# Sessions bound to the credential they logged in with (the sessions of before, bound to
# nothing, end); shares kept by the vendor's rid instead of its name (a freed name carries
# none). The secrets themselves are sealed at start by atrest.py, which needs the key.
_V3 = """
ALTER TABLE ui_sessions ADD COLUMN cred_hash TEXT;
DELETE FROM ui_sessions;
CREATE TABLE shares_by_rid (
    {rowid}
    model_id {int} NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    vendor_rid TEXT NOT NULL,
    PRIMARY KEY (model_id, vendor_rid)
);
INSERT INTO shares_by_rid (model_id, vendor_rid)
    SELECT s.model_id, v.rid FROM shares s JOIN vendors v ON v.name = s.vendor_name
    ORDER BY s.rowid;
DROP TABLE shares;
ALTER TABLE shares_by_rid RENAME TO shares;
"""

# Staged rollouts (rollouts.py, rollstore.py): one row per content under a rollout (or held
# for one), what each device did with it, and the decisions taken (one row each).
_V4 = """
CREATE TABLE IF NOT EXISTS rollouts (
    {rowid}
    model_id {int} NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    cid TEXT NOT NULL,
    state TEXT NOT NULL,            -- held, running, paused, aborted, done, back (abort --to)
    waves TEXT NOT NULL DEFAULT '', -- "1,10,50,100"
    wave {int} NOT NULL DEFAULT 0,  -- index into waves of the current wave
    grp TEXT NOT NULL DEFAULT '',   -- only this group's devices ('' = the model's)
    min_devices {int} NOT NULL DEFAULT 1,
    max_failures {real} NOT NULL DEFAULT 20,
    success {real} NOT NULL DEFAULT 100,
    soak {int} NOT NULL DEFAULT 0,  -- seconds
    wave_size {int} NOT NULL DEFAULT 0, -- devices in the current wave when it started
    wave_started {int} NOT NULL DEFAULT 0,
    created {int} NOT NULL DEFAULT 0,
    changed {int} NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '', -- why it paused or ended
    back_to TEXT NOT NULL DEFAULT '', -- abort --to: the content offered to those who took it
    source TEXT NOT NULL DEFAULT '', -- state back: the content whose takers are offered this
    PRIMARY KEY (model_id, cid)
);
CREATE TABLE IF NOT EXISTS rollout_devices (
    {rowid}
    model_id {int} NOT NULL,
    cid TEXT NOT NULL,
    sn TEXT NOT NULL,
    took {int} NOT NULL DEFAULT 0,  -- 1: it downloaded (a part of) the content
    state TEXT NOT NULL DEFAULT 'started',
    ts {int} NOT NULL DEFAULT 0,
    PRIMARY KEY (model_id, cid, sn),
    FOREIGN KEY (model_id, cid) REFERENCES rollouts(model_id, cid) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS rollout_events (
    id {serial},
    model_id {int} NOT NULL,
    cid TEXT NOT NULL,
    ts {int} NOT NULL,
    what TEXT NOT NULL,
    FOREIGN KEY (model_id, cid) REFERENCES rollouts(model_id, cid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS rollout_events_r ON rollout_events(model_id, cid, id);
"""

MIGRATIONS = [
    Migration(1, "the schema of release 0.1.0", _V1, sqlite=_V1_SQLITE, postgres=_V1_POSTGRES),
    Migration(2, "change notification on PostgreSQL", postgres=_V2_POSTGRES),
    Migration(3, "sessions bound to their credential; shares by vendor rid", _V3),
    Migration(4, "staged rollouts", _V4),
]

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version {int} PRIMARY KEY,
    name TEXT NOT NULL,
    applied {int} NOT NULL
);
"""


class SchemaTooNew(Exception):
    """The database was migrated by a newer release than this one."""


async def migrate(engine, migrations=None):
    """Apply what the database lacks of `migrations` (default MIGRATIONS), under the
    engine's migration lock. -> the versions applied (empty when up to date)."""
    migrations = MIGRATIONS if migrations is None else migrations
    known = {m.version for m in migrations}
    applied = []
    async with engine.migration_lock():
        await engine.script(_TABLE.format(**engine.dialect.types))
        done = {r[0] for r in await engine.all("SELECT version FROM schema_migrations")}
        newer = done - known
        if newer:
            raise SchemaTooNew(
                f"database schema version {max(newer)} is newer than this server knows "
                f"({max(known)})"
            )
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version in done:
                continue
            await engine.script(m.text(engine.dialect))
            await engine.run(
                "INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)",
                m.version,
                m.name,
                int(time.time()),
            )
            applied.append(m.version)
    return applied


async def version(engine):
    """The newest migration recorded in the database (0 for none)."""
    row = await engine.one("SELECT MAX(version) FROM schema_migrations")
    return row[0] or 0
