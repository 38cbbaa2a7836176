"""All SQL of the server, in one place (SQLite today; another engine means another module).

Handlers never see a cursor: they `await` the methods of `Store`, which return plain tuples,
dicts and lists; `async with store.tx():` groups calls into one transaction. The interface is
async so that another engine (PostgreSQL through asyncpg) fits behind it; this SQLite engine
never suspends inside a method, so a transaction here is never interleaved with another.
Credentials are stored as SHA-256 hashes and looked up by hash. The few
secrets the API must hand out again (a vendor CIK for `admin add-vendor --if-missing`, a
vendor token for `GET /provision/admin/auth/<id>`) are kept beside their hash sealed under
the server's secret key (secretkey.py); a device's CIK is drawn at its activation and only
its hash is kept.
"""

import contextlib
import json
import logging
import sqlite3

from .secretkey import Sealing, lookup_hash

log = logging.getLogger("exoprov.server")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    rid TEXT PRIMARY KEY,
    parent TEXT,
    kind TEXT NOT NULL,             -- 'vendor' or 'device'
    cik_hash TEXT UNIQUE,           -- NULL while disabled
    secret TEXT,                    -- a vendor's CIK, sealed (secretkey.py); devices: NULL
    state TEXT NOT NULL,            -- vendor: 'active'; device: notactivated/activated/disabled
    enabled_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS clients_parent ON clients(parent);
CREATE TABLE IF NOT EXISTS vendors (
    name TEXT PRIMARY KEY,
    rid TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS tokens (
    vendor_rid TEXT NOT NULL,
    tid TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    secret TEXT NOT NULL,           -- the token, sealed (secretkey.py)
    PRIMARY KEY (vendor_rid, tid)
);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vendor_rid TEXT NOT NULL,
    name TEXT NOT NULL,
    template_kind TEXT NOT NULL,    -- 'rid' or 'code'
    template TEXT NOT NULL,
    options TEXT NOT NULL,          -- JSON list
    UNIQUE (vendor_rid, name)
);
CREATE INDEX IF NOT EXISTS models_name ON models(name);
CREATE TABLE IF NOT EXISTS sns (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    sn TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '',
    client_rid TEXT,
    enabled_by TEXT,
    PRIMARY KEY (model_id, sn)
);
CREATE INDEX IF NOT EXISTS sns_client ON sns(client_rid);
CREATE TABLE IF NOT EXISTS ranges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    spec TEXT NOT NULL              -- canonical JSON of one range object
);
CREATE INDEX IF NOT EXISTS ranges_model ON ranges(model_id);
CREATE TABLE IF NOT EXISTS actlog (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    sn TEXT NOT NULL,
    ts INTEGER NOT NULL,
    conn TEXT NOT NULL,
    what TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS actlog_sn ON actlog(model_id, sn, id);
CREATE TABLE IF NOT EXISTS content (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    cid TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '',
    protected INTEGER NOT NULL DEFAULT 0,
    ctype TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    blob TEXT,
    PRIMARY KEY (model_id, cid)
);
CREATE TABLE IF NOT EXISTS groups (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    gid TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model_id, gid)
);
CREATE TABLE IF NOT EXISTS members (
    model_id INTEGER NOT NULL,
    gid TEXT NOT NULL,
    type TEXT NOT NULL,
    mid TEXT NOT NULL,
    expire INTEGER NOT NULL DEFAULT 0,
    meta TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model_id, gid, type, mid),
    FOREIGN KEY (model_id, gid) REFERENCES groups(model_id, gid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS members_mid ON members(model_id, type, mid);
CREATE TABLE IF NOT EXISTS shares (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    vendor_name TEXT NOT NULL,
    PRIMARY KEY (model_id, vendor_name)
);
CREATE TABLE IF NOT EXISTS data (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_rid TEXT NOT NULL,
    alias TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS data_alias ON data(client_rid, alias, id);
CREATE TABLE IF NOT EXISTS ui_sessions (
    id_hash TEXT PRIMARY KEY,       -- SHA-256 of the dashboard's session cookie
    vendor_rid TEXT NOT NULL,
    expire INTEGER NOT NULL,
    cred_hash TEXT                  -- hash of the CIK or token the session logged in with
);
CREATE TABLE IF NOT EXISTS jsonp_tokens (
    token_hash TEXT PRIMARY KEY,
    client_rid TEXT NOT NULL,
    spec TEXT NOT NULL,
    expire INTEGER NOT NULL
);
-- What each serial number's device last told (fleetstatus.py): one row per sn, kept
-- beside the history in `data`, so that a fleet listing or a rollout count is one query.
CREATE TABLE IF NOT EXISTS devstatus (
    model_id INTEGER NOT NULL,
    sn TEXT NOT NULL,
    last_seen INTEGER,              -- the last device call (throttled per process)
    address TEXT,                   -- the address that call came from
    reported INTEGER,               -- the time of the last report (alias write)
    state TEXT,                     -- the reported values, newest of each
    version TEXT,
    content TEXT,
    error TEXT,
    error_at INTEGER,               -- when `error` was reported
    boots INTEGER,
    rollbacks INTEGER,
    progress INTEGER,               -- percent; NULL unless the last state was downloading
    target TEXT,                    -- the version being downloaded or applied
    PRIMARY KEY (model_id, sn),
    FOREIGN KEY (model_id, sn) REFERENCES sns(model_id, sn) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS devstatus_version ON devstatus(model_id, version);
CREATE INDEX IF NOT EXISTS devstatus_state ON devstatus(model_id, state);
-- the dashboard's pages of one version, in sn order (keyset), whatever the fleet's size
CREATE INDEX IF NOT EXISTS devstatus_version_sn ON devstatus(model_id, version, sn);
"""

# SQLite only (pgstore keeps no such counter): one counter, moved by every change that a
# download's answer depends on (vendors, models, device credentials and state, serial numbers,
# content), whichever process makes it; the download path keeps its answers while it stands
# still (device.Grants).
_GENERATION = """
CREATE TABLE IF NOT EXISTS generation (n INTEGER NOT NULL);
INSERT INTO generation SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM generation);
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS gen_{table}_{op.lower()} AFTER {op} ON {table} "
    "BEGIN UPDATE generation SET n = n + 1; END;\n"
    for table in ("vendors", "models", "clients", "sns", "content")
    for op in ("INSERT", "UPDATE", "DELETE")
)

# Bounds on what one serial number or alias may accumulate.
ACTLOG_KEEP = 200
DATA_KEEP = 1000
# The values a device report may set (devstatus columns): text ones, then whole numbers.
REPORT_TEXT = ("state", "version", "content", "error", "target")
REPORT_INT = ("boots", "rollbacks", "progress")
_STATUS = (
    "last_seen, address, reported, state, version, content, error, error_at, boots, "
    "rollbacks, progress, target"
)
STATUS_KEYS = tuple(_STATUS.split(", "))


secret_hash = lookup_hash  # the lookup key of a credential (secretkey.py says why unkeyed)


class Duplicate(Exception):
    """A uniqueness rule was broken (the API answers 409)."""


class Store(Sealing):
    def __init__(self, path):
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        # what a row held is zeroed in its page when it is deleted or rewritten, where that
        # costs no extra write: a sealed token deleted leaves nothing behind in free space
        self.db.execute("PRAGMA secure_delete=FAST")
        self.db.executescript(_SCHEMA + _GENERATION)
        cols = [r[1] for r in self.db.execute("PRAGMA table_info(ui_sessions)")]
        if "cred_hash" not in cols:  # a file made before sessions were bound to credentials
            self.db.execute("ALTER TABLE ui_sessions ADD COLUMN cred_hash TEXT")

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    @contextlib.asynccontextmanager
    async def tx(self):
        """One transaction; nested calls join the outer one."""
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _one(self, sql, *args):
        return self.db.execute(sql, args).fetchone()

    def _all(self, sql, *args):
        return self.db.execute(sql, args).fetchall()

    def _run(self, sql, *args):
        return self.db.execute(sql, args).rowcount

    # -- clients and vendors ---------------------------------------------------------------

    async def add_client(self, rid, parent, kind, cik, state, enabled_at=0):
        self._run(
            "INSERT INTO clients (rid, parent, kind, cik_hash, secret, state, enabled_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rid,
            parent,
            kind,
            None if cik is None else secret_hash(cik),
            self.sealed(cik, "client:" + rid),
            state,
            enabled_at,
        )

    async def client_by_cik(self, cik):
        """(rid, kind, state, enabled_at) of the client holding this CIK, or None."""
        return self._one(
            "SELECT rid, kind, state, enabled_at FROM clients WHERE cik_hash = ?",
            secret_hash(cik),
        )

    async def client(self, rid):
        """(rid, parent, kind, state, enabled_at, secret) or None."""
        return self._one(
            "SELECT rid, parent, kind, state, enabled_at, secret FROM clients WHERE rid = ?", rid
        )

    async def client_parent(self, rid):
        row = self._one("SELECT parent FROM clients WHERE rid = ?", rid)
        return None if row is None else (row[0] or "")

    async def set_client_cik(self, rid, cik, state, enabled_at):
        """Set (cik, sealed: a vendor's) or drop (cik None: a device's until its
        activation draws one) the client's CIK, and set its state."""
        self._run(
            "UPDATE clients SET cik_hash = ?, secret = ?, state = ?, enabled_at = ? WHERE rid = ?",
            None if cik is None else secret_hash(cik),
            self.sealed(cik, "client:" + rid),
            state,
            enabled_at,
            rid,
        )

    async def release_cik(self, rid, cik, enabled_at):
        """Activation: the CIK drawn for the device becomes its own (only its hash is kept).
        True for the one caller that released it (a conditional UPDATE: one winner), while
        the client is still the enabled, not activated one that caller saw."""
        n = self._run(
            "UPDATE clients SET state = 'activated', cik_hash = ?, secret = NULL "
            "WHERE rid = ? AND state = 'notactivated' AND enabled_at = ?",
            secret_hash(cik),
            rid,
            enabled_at,
        )
        return n == 1

    async def delete_client(self, rid):
        self._run("DELETE FROM clients WHERE rid = ?", rid)
        self._run("DELETE FROM data WHERE client_rid = ?", rid)
        self._run("DELETE FROM jsonp_tokens WHERE client_rid = ?", rid)

    async def add_vendor_name(self, name, rid):
        try:
            self._run("INSERT INTO vendors (name, rid) VALUES (?, ?)", name, rid)
        except sqlite3.IntegrityError:
            raise Duplicate(name)

    async def delete_vendor_name(self, name, rid):
        """Unregister; the shares made to this name go with it (whoever registers the name
        next inherits nothing)."""
        async with self.tx():
            n = self._run("DELETE FROM vendors WHERE name = ? AND rid = ?", name, rid)
            if n:
                self._run("DELETE FROM shares WHERE vendor_name = ?", name)
        return n

    async def vendor_by_name(self, name):
        """(name, rid) or None."""
        return self._one("SELECT name, rid FROM vendors WHERE name = ?", name)

    async def vendor_name_of(self, rid):
        row = self._one("SELECT name FROM vendors WHERE rid = ?", rid)
        return None if row is None else row[0]

    async def vendors(self):
        return self._all("SELECT name, rid FROM vendors ORDER BY name")

    # -- vendor tokens -----------------------------------------------------------------------

    async def token_vendor(self, token):
        row = self._one("SELECT vendor_rid FROM tokens WHERE token_hash = ?", secret_hash(token))
        return None if row is None else row[0]

    async def add_token(self, vendor_rid, tid, token):
        try:
            self._run(
                "INSERT INTO tokens (vendor_rid, tid, token_hash, secret) VALUES (?, ?, ?, ?)",
                vendor_rid,
                tid,
                secret_hash(token),
                self.sealed(token, f"token:{vendor_rid}:{tid}"),
            )
        except sqlite3.IntegrityError:
            raise Duplicate(tid)

    async def token_ids(self, vendor_rid):
        rows = self._all("SELECT tid FROM tokens WHERE vendor_rid = ? ORDER BY rowid", vendor_rid)
        return [r[0] for r in rows]

    async def token_secret(self, vendor_rid, tid):
        row = self._one(
            "SELECT secret FROM tokens WHERE vendor_rid = ? AND tid = ?", vendor_rid, tid
        )
        return None if row is None else self.opened(row[0], f"token:{vendor_rid}:{tid}")

    async def delete_token(self, vendor_rid, tid):
        return self._run("DELETE FROM tokens WHERE vendor_rid = ? AND tid = ?", vendor_rid, tid)

    # -- models ----------------------------------------------------------------------------

    async def model(self, vendor_rid, name):
        """(id, name, template_kind, template, options list) or None."""
        row = self._one(
            "SELECT id, name, template_kind, template, options FROM models "
            "WHERE vendor_rid = ? AND name = ?",
            vendor_rid,
            name,
        )
        if row is None:
            return None
        return row[0], row[1], row[2], row[3], json.loads(row[4])

    async def model_name_taken(self, name):
        return self._one("SELECT 1 FROM models WHERE name = ? LIMIT 1", name) is not None

    async def models(self, vendor_rid):
        rows = self._all("SELECT name FROM models WHERE vendor_rid = ? ORDER BY id", vendor_rid)
        return [r[0] for r in rows]

    async def add_model(self, vendor_rid, name, kind, template, options):
        try:
            self._run(
                "INSERT INTO models (vendor_rid, name, template_kind, template, options) "
                "VALUES (?, ?, ?, ?, ?)",
                vendor_rid,
                name,
                kind,
                template,
                json.dumps(options),
            )
        except sqlite3.IntegrityError:
            raise Duplicate(name)

    async def update_model(self, model_id, kind, template, options):
        self._run(
            "UPDATE models SET template_kind = ?, template = ?, options = ? WHERE id = ?",
            kind,
            template,
            json.dumps(options),
            model_id,
        )

    async def delete_model(self, model_id):
        """Delete a model and everything under it; returns the blob names to remove."""
        async with self.tx():
            blobs = [
                r[0]
                for r in self._all(
                    "SELECT blob FROM content WHERE model_id = ? AND blob IS NOT NULL", model_id
                )
            ]
            rids = self._all(
                "SELECT client_rid FROM sns WHERE model_id = ? AND client_rid IS NOT NULL",
                model_id,
            )
            for (rid,) in rids:
                await self.delete_client(rid)
            self._run("DELETE FROM members WHERE model_id = ?", model_id)
            self._run("DELETE FROM models WHERE id = ?", model_id)
        return blobs

    async def shared_models(self, vendor_name):
        """[(owner vendor name, model name)] shared to `vendor_name`."""
        return self._all(
            "SELECT v.name, m.name FROM shares s JOIN models m ON m.id = s.model_id "
            "JOIN vendors v ON v.rid = m.vendor_rid WHERE s.vendor_name = ? ORDER BY m.id",
            vendor_name,
        )

    # -- shares ----------------------------------------------------------------------------

    async def share_names(self, model_id):
        rows = self._all(
            "SELECT vendor_name FROM shares WHERE model_id = ? ORDER BY rowid", model_id
        )
        return [r[0] for r in rows]

    async def is_shared(self, model_id, vendor_name):
        row = self._one(
            "SELECT 1 FROM shares WHERE model_id = ? AND vendor_name = ?", model_id, vendor_name
        )
        return row is not None

    async def add_share(self, model_id, vendor_name):
        try:
            self._run(
                "INSERT INTO shares (model_id, vendor_name) VALUES (?, ?)", model_id, vendor_name
            )
        except sqlite3.IntegrityError:
            raise Duplicate(vendor_name)

    async def delete_share(self, model_id, vendor_name):
        return self._run(
            "DELETE FROM shares WHERE model_id = ? AND vendor_name = ?", model_id, vendor_name
        )

    # -- serial numbers --------------------------------------------------------------------

    async def sn(self, model_id, sn):
        """(sn, extra, client_rid, enabled_by) or None."""
        return self._one(
            "SELECT sn, extra, client_rid, enabled_by FROM sns WHERE model_id = ? AND sn = ?",
            model_id,
            sn,
        )

    async def add_sns(self, model_id, pairs):
        """Add (sn, extra) pairs in one transaction; Duplicate if any exists."""
        async with self.tx():
            for sn, extra in pairs:
                try:
                    self._run(
                        "INSERT INTO sns (model_id, sn, extra) VALUES (?, ?, ?)",
                        model_id,
                        sn,
                        extra,
                    )
                except sqlite3.IntegrityError:
                    raise Duplicate(sn)

    async def ensure_sn(self, model_id, sn):
        """Materialise a serial number that is whitelisted through a range."""
        self._run("INSERT OR IGNORE INTO sns (model_id, sn) VALUES (?, ?)", model_id, sn)

    async def delete_sns(self, model_id, sns):
        """Delete serial numbers and their clients; returns how many existed."""
        count = 0
        async with self.tx():
            for sn in sns:
                row = await self.sn(model_id, sn)
                if row is None:
                    continue
                if row[2]:
                    await self.delete_client(row[2])
                self._run("DELETE FROM sns WHERE model_id = ? AND sn = ?", model_id, sn)
                count += 1
        return count

    async def list_sns(self, model_id, offset, limit, enabled_by=None):
        """[(sn, extra, client_rid, state, enabled_at)] in insertion order."""
        sql = (
            "SELECT s.sn, s.extra, s.client_rid, c.state, c.enabled_at FROM sns s "
            "LEFT JOIN clients c ON c.rid = s.client_rid WHERE s.model_id = ?"
        )
        args = [model_id]
        if enabled_by is not None:
            sql += " AND s.enabled_by = ?"
            args.append(enabled_by)
        sql += " ORDER BY s.rowid LIMIT ? OFFSET ?"
        return self.db.execute(sql, (*args, limit, offset)).fetchall()

    async def set_sn_client(self, model_id, sn, client_rid, enabled_by):
        self._run(
            "UPDATE sns SET client_rid = ?, enabled_by = ? WHERE model_id = ? AND sn = ?",
            client_rid,
            enabled_by,
            model_id,
            sn,
        )

    async def sn_of_client(self, client_rid):
        """(model_id, sn) of the serial number this device client belongs to, or None."""
        return self._one("SELECT model_id, sn FROM sns WHERE client_rid = ?", client_rid)

    async def device_view(self, cik, vendor, model):
        """The download path's lookups in one query: (client_by_cik row or None, id of model
        `model` of vendor `vendor` or None, sn_of_client row or None)."""
        row = self._one(
            "SELECT c.rid, c.kind, c.state, c.enabled_at, s.model_id, s.sn, "
            "(SELECT m.id FROM vendors v JOIN models m ON m.vendor_rid = v.rid "
            " WHERE v.name = ? AND m.name = ?) "
            "FROM clients c LEFT JOIN sns s ON s.client_rid = c.rid WHERE c.cik_hash = ?",
            vendor,
            model,
            secret_hash(cik),
        )
        if row is None:
            return None, None, None
        return row[:4], row[6], (row[4:6] if row[4] is not None else None)

    async def generation(self):
        """A number that changes with every change a download's answer depends on (see the
        schema's `generation` table), in this process or another one on the same file."""
        return self._one("SELECT n FROM generation")[0]

    # -- ranges ----------------------------------------------------------------------------

    async def ranges(self, model_id):
        rows = self._all("SELECT spec FROM ranges WHERE model_id = ? ORDER BY id", model_id)
        return [json.loads(r[0]) for r in rows]

    async def range_count(self, model_id):
        return self._one("SELECT COUNT(*) FROM ranges WHERE model_id = ?", model_id)[0]

    async def add_ranges(self, model_id, specs):
        async with self.tx():
            for spec in specs:
                self._run(
                    "INSERT INTO ranges (model_id, spec) VALUES (?, ?)",
                    model_id,
                    json.dumps(spec, sort_keys=True),
                )

    async def delete_ranges(self, model_id, specs):
        count = 0
        async with self.tx():
            for spec in specs:
                count += self._run(
                    "DELETE FROM ranges WHERE model_id = ? AND spec = ?",
                    model_id,
                    json.dumps(spec, sort_keys=True),
                )
        return count

    # -- activation log --------------------------------------------------------------------

    async def log_activation(self, model_id, sn, ts, conn, what):
        async with self.tx():
            self._run(
                "INSERT INTO actlog (model_id, sn, ts, conn, what) VALUES (?, ?, ?, ?, ?)",
                model_id,
                sn,
                ts,
                conn,
                what,
            )
            self._run(
                "DELETE FROM actlog WHERE model_id = ? AND sn = ? AND id <= ("
                "SELECT id FROM actlog WHERE model_id = ? AND sn = ? "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                model_id,
                sn,
                model_id,
                sn,
                ACTLOG_KEEP,
            )

    async def activation_log(self, model_id, sn):
        return self._all(
            "SELECT ts, conn, what FROM actlog WHERE model_id = ? AND sn = ? ORDER BY id",
            model_id,
            sn,
        )

    # -- content ---------------------------------------------------------------------------

    async def content(self, model_id, cid):
        """dict(cid, meta, protected, ctype, size, updated, blob) or None."""
        row = self._one(
            "SELECT cid, meta, protected, ctype, size, updated, blob FROM content "
            "WHERE model_id = ? AND cid = ?",
            model_id,
            cid,
        )
        if row is None:
            return None
        keys = ("cid", "meta", "protected", "ctype", "size", "updated", "blob")
        return dict(zip(keys, row, strict=True))

    async def content_list(self, model_id):
        """[(cid, protected)] in creation order."""
        return self._all(
            "SELECT cid, protected FROM content WHERE model_id = ? ORDER BY rowid", model_id
        )

    async def add_content(self, model_id, cid, meta, protected):
        try:
            self._run(
                "INSERT INTO content (model_id, cid, meta, protected) VALUES (?, ?, ?, ?)",
                model_id,
                cid,
                meta,
                int(protected),
            )
        except sqlite3.IntegrityError:
            raise Duplicate(cid)

    async def set_blob(self, model_id, cid, blob, ctype, size, updated):
        """Point the content at a new blob; returns the old blob name, or False if gone.

        `updated` moves forward at least one second per upload, so that Last-Modified
        names one upload and can serve as an If-Range validator."""
        async with self.tx():
            row = self._one(
                "SELECT blob, updated FROM content WHERE model_id = ? AND cid = ?", model_id, cid
            )
            if row is None:
                return False
            updated = max(updated, row[1] + 1)
            self._run(
                "UPDATE content SET blob = ?, ctype = ?, size = ?, updated = ? "
                "WHERE model_id = ? AND cid = ?",
                blob,
                ctype,
                size,
                updated,
                model_id,
                cid,
            )
        return row[0]

    async def delete_content(self, model_id, cid):
        """Returns (existed, blob name or None)."""
        async with self.tx():
            row = self._one(
                "SELECT blob FROM content WHERE model_id = ? AND cid = ?", model_id, cid
            )
            if row is None:
                return False, None
            self._run("DELETE FROM content WHERE model_id = ? AND cid = ?", model_id, cid)
            self._run(
                "DELETE FROM members WHERE model_id = ? AND type = 'content' AND mid = ?",
                model_id,
                cid,
            )
        return True, row[0]

    async def all_blobs(self):
        return {r[0] for r in self._all("SELECT blob FROM content WHERE blob IS NOT NULL")}

    # -- groups ----------------------------------------------------------------------------

    async def group(self, model_id, gid):
        """(meta, member count) or None."""
        row = self._one("SELECT meta FROM groups WHERE model_id = ? AND gid = ?", model_id, gid)
        if row is None:
            return None
        count = self._one(
            "SELECT COUNT(*) FROM members WHERE model_id = ? AND gid = ?", model_id, gid
        )[0]
        return row[0], count

    async def groups(self, model_id, offset, limit):
        return self._all(
            "SELECT gid, meta FROM groups WHERE model_id = ? ORDER BY rowid LIMIT ? OFFSET ?",
            model_id,
            limit,
            offset,
        )

    async def add_group(self, model_id, gid, meta):
        try:
            self._run(
                "INSERT INTO groups (model_id, gid, meta) VALUES (?, ?, ?)", model_id, gid, meta
            )
        except sqlite3.IntegrityError:
            raise Duplicate(gid)

    async def delete_group(self, model_id, gid):
        async with self.tx():
            n = self._run("DELETE FROM groups WHERE model_id = ? AND gid = ?", model_id, gid)
            self._run(
                "DELETE FROM members WHERE model_id = ? AND type = 'group' AND mid = ?",
                model_id,
                gid,
            )
        return n

    async def upsert_members(self, model_id, gid, rows):
        """rows: [(type, mid, expire, meta)]."""
        async with self.tx():
            for type_, mid, expire, meta in rows:
                self._run(
                    "INSERT INTO members (model_id, gid, type, mid, expire, meta) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (model_id, gid, type, mid) "
                    "DO UPDATE SET expire = excluded.expire, meta = excluded.meta",
                    model_id,
                    gid,
                    type_,
                    mid,
                    expire,
                    meta,
                )

    async def delete_members(self, model_id, gid, pairs):
        count = 0
        async with self.tx():
            for type_, mid in pairs:
                count += self._run(
                    "DELETE FROM members WHERE model_id = ? AND gid = ? AND type = ? AND mid = ?",
                    model_id,
                    gid,
                    type_,
                    mid,
                )
        return count

    async def members(self, model_id, gid, type_=None, mid=None, offset=0, limit=1000):
        sql = "SELECT type, mid, expire, meta FROM members WHERE model_id = ? AND gid = ?"
        args = [model_id, gid]
        if type_ is not None:
            sql += " AND type = ?"
            args.append(type_)
        if mid is not None:
            sql += " AND mid = ?"
            args.append(mid)
        sql += " ORDER BY rowid LIMIT ? OFFSET ?"
        return self.db.execute(sql, (*args, limit, offset)).fetchall()

    async def groups_of(self, model_id, type_, mid, offset=0, limit=1000, now=None):
        """Ids of the groups holding member (type, mid); with `now`, only unexpired ones."""
        sql = "SELECT gid FROM members WHERE model_id = ? AND type = ? AND mid = ?"
        args = [model_id, type_, mid]
        if now is not None:
            sql += " AND (expire = 0 OR expire > ?)"
            args.append(now)
        sql += " ORDER BY rowid LIMIT ? OFFSET ?"
        rows = self.db.execute(sql, (*args, limit, offset)).fetchall()
        return [r[0] for r in rows]

    # -- data interface and jsonp ----------------------------------------------------------

    async def write_data(self, client_rid, ts, pairs):
        async with self.tx():
            for alias, value in pairs:
                self._run(
                    "INSERT INTO data (client_rid, alias, ts, value) VALUES (?, ?, ?, ?)",
                    client_rid,
                    alias,
                    ts,
                    value,
                )
                self._run(
                    "DELETE FROM data WHERE client_rid = ? AND alias = ? AND id <= ("
                    "SELECT id FROM data WHERE client_rid = ? AND alias = ? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    client_rid,
                    alias,
                    client_rid,
                    alias,
                    DATA_KEEP,
                )

    async def latest(self, client_rid, alias):
        row = self._one(
            "SELECT value FROM data WHERE client_rid = ? AND alias = ? ORDER BY id DESC LIMIT 1",
            client_rid,
            alias,
        )
        return None if row is None else row[0]

    async def series(self, client_rid, alias, start, end, offset, limit):
        return self._all(
            "SELECT ts, value FROM data WHERE client_rid = ? AND alias = ? AND ts >= ? "
            "AND ts <= ? ORDER BY ts, id LIMIT ? OFFSET ?",
            client_rid,
            alias,
            start,
            end,
            limit,
            offset,
        )

    async def add_jsonp_token(self, token, client_rid, spec, expire):
        self._run("DELETE FROM jsonp_tokens WHERE expire < ?", int(spec.get("now", 0)))
        self._run(
            "INSERT INTO jsonp_tokens (token_hash, client_rid, spec, expire) VALUES (?, ?, ?, ?)",
            secret_hash(token),
            client_rid,
            json.dumps(spec),
            expire,
        )

    async def jsonp_token(self, token):
        """(client_rid, spec dict, expire) or None."""
        row = self._one(
            "SELECT client_rid, spec, expire FROM jsonp_tokens WHERE token_hash = ?",
            secret_hash(token),
        )
        if row is None:
            return None
        return row[0], json.loads(row[1]), row[2]

    # -- device status (issue 10): last heard from, and what the device last reported -----

    async def heard(self, model_id, sn, ts, address):
        """A device call for serial number `sn` from `address` at `ts`: sets its `last_seen`
        and `address`. Nothing happens for a serial number not in the model's list."""
        try:
            self._run(
                "INSERT INTO devstatus (model_id, sn, last_seen, address) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model_id, sn) DO UPDATE SET last_seen = excluded.last_seen, "
                "address = excluded.address",
                model_id,
                sn,
                ts,
                address,
            )
        except sqlite3.IntegrityError:  # not whitelisted (or deleted meanwhile)
            pass

    async def record_report(self, model_id, sn, ts, address, fields):
        """A device report at `ts` from `address`: `fields` maps names of REPORT_TEXT (str)
        and REPORT_INT (int) to the values to keep; other names are ignored. Also sets
        last_seen, address, reported (= ts) and error_at (= ts when `error` is given); a
        state other than "downloading" without a progress clears `progress`."""
        cols = [k for k in REPORT_TEXT + REPORT_INT if k in fields]
        if "error" in fields:
            cols.append("error_at")
            fields = dict(fields, error_at=ts)
        sets = [f"{c} = excluded.{c}" for c in ("last_seen", "address", "reported", *cols)]
        if fields.get("state", "downloading") != "downloading" and "progress" not in fields:
            sets.append("progress = NULL")
        names = ", ".join(("model_id", "sn", "last_seen", "address", "reported", *cols))
        try:
            self._run(
                f"INSERT INTO devstatus ({names}) VALUES ({', '.join('?' * (5 + len(cols)))}) "
                f"ON CONFLICT (model_id, sn) DO UPDATE SET {', '.join(sets)}",
                model_id,
                sn,
                ts,
                address,
                ts,
                *[fields[c] for c in cols],
            )
        except sqlite3.IntegrityError:
            pass

    async def device_status(self, model_id, sn):
        """dict(sn, *STATUS_KEYS) of one serial number, or None when its device never called:
        last_seen, reported, error_at: unix seconds or None; address, state, version,
        content ("id:updated"), error, target: str or None; boots, rollbacks, progress
        (percent, only while downloading): int or None."""
        row = self._one(
            f"SELECT sn, {_STATUS} FROM devstatus WHERE model_id = ? AND sn = ?", model_id, sn
        )
        return None if row is None else dict(zip(("sn", *STATUS_KEYS), row, strict=True))

    async def device_statuses(
        self,
        model_id,
        offset=0,
        limit=100,
        enabled_by=None,
        version=None,
        state=None,
        search=None,
    ):
        """One page of a model's serial numbers (list order) with what their devices told:
        [dict(sn, client_rid, client_state, enabled_at, *STATUS_KEYS)] (client_state and
        enabled_at as in list_sns: give them to Server.status() for the spec's status;
        the STATUS_KEYS as in device_status(), all None for a device never heard from).
        Filters: enabled_by (a share sees what it enabled), version / state (exact; "" for
        none reported), search (part of the sn)."""
        sql = (
            "SELECT s.sn, s.client_rid, c.state, c.enabled_at, "
            + ", ".join("d." + k for k in STATUS_KEYS)
            + " FROM sns s LEFT JOIN clients c ON c.rid = s.client_rid "
            "LEFT JOIN devstatus d ON d.model_id = s.model_id AND d.sn = s.sn "
            "WHERE s.model_id = ?"
        )
        args = [model_id]
        if enabled_by is not None:
            sql += " AND s.enabled_by = ?"
            args.append(enabled_by)
        for col, value in (("version", version), ("state", state)):
            if value == "":
                sql += f" AND d.{col} IS NULL"
            elif value is not None:
                sql += f" AND d.{col} = ?"
                args.append(value)
        if search:
            sql += " AND instr(s.sn, ?) > 0"
            args.append(search)
        sql += " ORDER BY s.rowid LIMIT ? OFFSET ?"
        keys = ("sn", "client_rid", "client_state", "enabled_at", *STATUS_KEYS)
        rows = self.db.execute(sql, (*args, limit, offset)).fetchall()
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def status_counts(self, model_id, enabled_by=None):
        """Counts over a model's serial numbers for a rollout view:
        {"devices": int (serial numbers), "heard": int (their devices ever called),
         "versions": [(version or None, int)], "states": [(state or None, int)],
         "downloading": [(target or None, int)] (state "downloading", by target version),
         "failed": int (state "failed" or "refused"), "rolled_back": int (rollbacks > 0)}.
        Lists are sorted by count, largest first, then by value (None, nothing reported,
        last among equal counts)."""
        where = "WHERE s.model_id = ?" + (" AND s.enabled_by = ?" if enabled_by else "")
        args = (model_id, enabled_by) if enabled_by else (model_id,)
        rows = self._all(
            "SELECT d.version, d.state, d.target, d.sn IS NOT NULL, "
            "COALESCE(d.rollbacks, 0) > 0, COUNT(*) FROM sns s LEFT JOIN devstatus d "
            f"ON d.model_id = s.model_id AND d.sn = s.sn {where} GROUP BY 1, 2, 3, 4, 5",
            *args,
        )
        out = {"devices": 0, "heard": 0, "failed": 0, "rolled_back": 0}
        versions, states, downloading = {}, {}, {}
        for version, state, target, heard, rolled, n in rows:
            out["devices"] += n
            out["heard"] += n if heard else 0
            out["rolled_back"] += n if rolled else 0
            out["failed"] += n if state in ("failed", "refused") else 0
            versions[version] = versions.get(version, 0) + n
            states[state] = states.get(state, 0) + n
            if state == "downloading":
                downloading[target] = downloading.get(target, 0) + n
        for key, counts in (
            ("versions", versions),
            ("states", states),
            ("downloading", downloading),
        ):
            out[key] = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
        return out

    # -- secrets at rest (atrest.py) -------------------------------------------------------

    async def secret_rows(self):
        """[(table, key 1, key 2, kind, state, secret)] of every stored secret: clients by
        rid, tokens by (vendor rid, token id)."""
        return self._all(
            "SELECT 'clients', rid, '', kind, state, secret FROM clients "
            "WHERE secret IS NOT NULL UNION ALL "
            "SELECT 'tokens', vendor_rid, tid, '', '', secret FROM tokens"
        )

    async def put_secret(self, table, k1, k2, old, new, drop_cik=False):
        """Replace a secret that still is `old`; drop_cik: the client's CIK hash too.
        Returns 1 if it was replaced."""
        if table == "tokens":
            return self._run(
                "UPDATE tokens SET secret = ? WHERE vendor_rid = ? AND tid = ? AND secret = ?",
                new,
                k1,
                k2,
                old,
            )
        drop = ", cik_hash = NULL" if drop_cik else ""
        return self._run(
            f"UPDATE clients SET secret = ?{drop} WHERE rid = ? AND secret = ?", new, k1, old
        )

    async def scrub(self):
        """Rewrite the file so that no free page still holds what was replaced, then empty
        the WAL (its frames held the old pages too)."""
        try:
            self.db.execute("VACUUM")
        except sqlite3.OperationalError as exc:  # another instance reading the file
            log.warning("could not VACUUM the database (%s): run the server alone once", exc)
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- dashboard sessions and pages (tools/server/ui) ------------------------------------

    async def add_ui_session(self, id_hash, vendor_rid, cred_hash, expire, now):
        """A dashboard session: only the hash of its cookie, the vendor, the hash of the CIK
        or token it logged in with (the session lives only as long as that credential does)
        and its expiry."""
        async with self.tx():
            self._run("DELETE FROM ui_sessions WHERE expire <= ?", now)
            self._run(
                "INSERT INTO ui_sessions (id_hash, vendor_rid, cred_hash, expire) "
                "VALUES (?, ?, ?, ?)",
                id_hash,
                vendor_rid,
                cred_hash,
                expire,
            )

    async def ui_session(self, id_hash, now):
        """The vendor rid of an unexpired session whose credential still stands (the vendor's
        CIK unchanged, or its token not deleted), or None."""
        row = self._one(
            "SELECT s.vendor_rid FROM ui_sessions s WHERE s.id_hash = ? AND s.expire > ? AND ("
            "EXISTS (SELECT 1 FROM clients c WHERE c.rid = s.vendor_rid "
            "AND c.cik_hash = s.cred_hash) OR EXISTS (SELECT 1 FROM tokens t "
            "WHERE t.vendor_rid = s.vendor_rid AND t.token_hash = s.cred_hash))",
            id_hash,
            now,
        )
        return None if row is None else row[0]

    async def delete_ui_session(self, id_hash):
        return self._run("DELETE FROM ui_sessions WHERE id_hash = ?", id_hash)

    async def delete_ui_sessions_of(self, vendor_rid):
        return self._run("DELETE FROM ui_sessions WHERE vendor_rid = ?", vendor_rid)

    async def vendor_cik(self, rid):
        """A vendor's CIK, opened from its sealed copy (None for another client)."""
        row = self._one("SELECT secret FROM clients WHERE rid = ? AND kind = 'vendor'", rid)
        return None if row is None or row[0] is None else self.opened(row[0], "client:" + rid)

    async def sn_count(self, model_id):
        return self._one("SELECT COUNT(*) FROM sns WHERE model_id = ?", model_id)[0]

    async def sn_page(self, model_id, page):
        """One page of a model's serial numbers in sn order, by keyset (`after` / `before` an
        sn, the primary key's order) so that a page costs the same at row 100 000 as at row 1.
        page: dict(limit, after, before, search, status, version, enabled_by, now, window);
        status is the spec's (activated, notactivated, expired) or "none" (no client).
        Rows: (sn, extra, client_rid, client state, enabled_at, and from devstatus: version,
        reported state, error, last_seen)."""
        # With a version, the walk is along devstatus_version_sn (only that version's rows,
        # already in sn order); else along the primary key.
        cols = (
            "SELECT s.sn, s.extra, s.client_rid, c.state, c.enabled_at, d.version, d.state, "
            "d.error, d.last_seen FROM "
        )
        if page.get("version"):
            key = "d.sn"
            sql = [
                cols + "devstatus d JOIN sns s ON s.model_id = d.model_id AND s.sn = d.sn "
                "LEFT JOIN clients c ON c.rid = s.client_rid WHERE d.model_id = ? "
                "AND d.version = ?"
            ]
            args = [model_id, page["version"]]
        else:
            key = "s.sn"
            sql = [
                cols + "sns s LEFT JOIN clients c ON c.rid = s.client_rid "
                "LEFT JOIN devstatus d ON d.model_id = s.model_id AND d.sn = s.sn "
                "WHERE s.model_id = ?"
            ]
            args = [model_id]
        backwards = page.get("after") is None and page.get("before") is not None
        if page.get("after") is not None:
            sql.append(f"AND {key} > ?")
            args.append(page["after"])
        elif backwards:
            sql.append(f"AND {key} < ?")
            args.append(page["before"])
        if page.get("enabled_by") is not None:
            sql.append("AND s.enabled_by = ?")
            args.append(page["enabled_by"])
        if page.get("search"):
            sql.append("AND instr(s.sn, ?) > 0")
            args.append(page["search"])
        status = page.get("status")
        if status:
            fresh = "c.state = 'notactivated' AND c.enabled_at + ? > ?"
            sql.append(
                {
                    "activated": "AND c.state = 'activated'",
                    "notactivated": f"AND {fresh}",
                    "expired": f"AND c.state IS NOT NULL AND c.state != 'activated' "
                    f"AND NOT ({fresh})",
                    # `+`: not through sns_client, which would give the rows out of order
                    "none": "AND +s.client_rid IS NULL",
                }[status]
            )
            if status in ("notactivated", "expired"):
                args += [page["window"], page["now"]]
        sql.append(f"ORDER BY {key} {'DESC' if backwards else 'ASC'} LIMIT ?")
        args.append(page["limit"])
        rows = self.db.execute(" ".join(sql), args).fetchall()
        return rows[::-1] if backwards else rows
