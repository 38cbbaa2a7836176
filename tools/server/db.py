"""All SQL of the server, written once for both engines (engine.py, migrations.py).

Handlers never see a cursor: they `await` the methods of `Store`, which return the named
rows below (one shape per query), plain values, dicts and lists; `async with store.tx():`
groups calls into one transaction. `Store` is the same for SQLite and PostgreSQL: its
engine brings the connections, the placeholders and the few words of SQL they spell
differently (engine.Dialect); the schema is the numbered list in migrations.py.

Credentials are stored as SHA-256 hashes and looked up by hash. The few secrets the API must
hand out again (a vendor CIK for `admin add-vendor --if-missing`, a vendor token for
`GET /provision/admin/auth/<id>`) are kept beside their hash sealed under the server's secret
key (secretkey.py); a device's CIK is drawn at its activation and only its hash is kept.
"""

import json
from typing import NamedTuple

from .engine import Conflict
from .secretkey import Sealing, lookup_hash

# Bounds on what one serial number or alias may accumulate.
ACTLOG_KEEP = 200
DATA_KEEP = 1000
# What one client may keep through the data interface: alias names, and characters of the
# values kept per alias (the newest are kept, one at least): names x (ALIAS_KEEP_CHARS + one
# value of util.TEXT_MAX) bounds what a device can make the database hold (about 4.7 MB)
ALIAS_NAMES_MAX = 128
ALIAS_KEEP_CHARS = 32 * 1024
# The values a device report may set (devstatus columns): text ones, then whole numbers.
REPORT_TEXT = ("state", "version", "content", "error", "target")
REPORT_INT = ("boots", "rollbacks", "progress")
STATUS_KEYS = (
    "last_seen",
    "address",
    "reported",
    "state",
    "version",
    "content",
    "error",
    "error_at",
    "boots",
    "rollbacks",
    "progress",
    "target",
)
_STATUS = ", ".join(STATUS_KEYS)
_CLIENT = "rid, parent, kind, state, enabled_at, secret"


class Client(NamedTuple):
    rid: str
    parent: str | None
    kind: str  # "vendor" or "device"
    state: str  # vendor: "active"; device: notactivated, activated, disabled
    enabled_at: int
    secret: str | None  # a vendor's CIK, sealed (secretkey.py); None for a device


class VendorRow(NamedTuple):
    name: str
    rid: str


class ModelRow(NamedTuple):
    id: int
    name: str
    template_kind: str  # "rid" or "code"
    template: str
    options: list


class SharedModel(NamedTuple):
    owner: str  # the vendor name of the model's owner
    model: str


class Sn(NamedTuple):
    sn: str
    extra: str
    client_rid: str | None
    enabled_by: str | None  # the vendor rid that enabled it (a share's own, or the owner's)


class SnListed(NamedTuple):
    sn: str
    extra: str
    client_rid: str | None
    state: str | None  # the client's
    enabled_at: int | None


class SnRef(NamedTuple):
    model_id: int
    sn: str


class DeviceView(NamedTuple):
    client: Client | None
    model_id: int | None
    sn: SnRef | None


class LogLine(NamedTuple):
    ts: int
    conn: str
    what: str


class ContentItem(NamedTuple):
    cid: str
    protected: int


class Group(NamedTuple):
    meta: str
    count: int


class GroupItem(NamedTuple):
    gid: str
    meta: str


class Member(NamedTuple):
    type: str
    mid: str
    expire: int
    meta: str


class Point(NamedTuple):
    ts: int
    value: str


class JsonpToken(NamedTuple):
    client_rid: str
    spec: dict
    expire: int


class SnPageRow(NamedTuple):
    sn: str
    extra: str
    client_rid: str | None
    client_state: str | None
    enabled_at: int | None
    version: str | None  # from devstatus, None when never reported
    state: str | None
    error: str | None
    last_seen: int | None


secret_hash = lookup_hash  # the lookup key of a credential (secretkey.py says why unkeyed)


class Duplicate(Exception):
    """A uniqueness rule was broken (the API answers 409)."""


class Store(Sealing):
    """The server's storage over one engine (sqlite_engine.SqliteEngine or
    pg_engine.PgEngine); storage.open_store() makes one from a --db value."""

    def __init__(self, engine):
        self.db = engine
        self.dialect = engine.dialect

    async def open(self):
        """Connect and migrate (migrations.py)."""
        await self.db.open()
        return self

    async def aclose(self):
        await self.db.aclose()

    def tx(self):
        """One transaction; nested calls join the outer one."""
        return self.db.tx()

    async def generation(self):
        """A number that changes with every committed change a download's answer depends on
        (migrations.WATCHED), in this process or another one on the same database; None
        while the engine cannot tell."""
        return await self.db.generation()

    async def _value(self, sql, *args):
        """The first column of the first row, or None."""
        row = await self.db.one(sql, *args)
        return None if row is None else row[0]

    async def _column(self, sql, *args):
        return [r[0] for r in await self.db.all(sql, *args)]

    async def _row(self, shape, sql, *args):
        row = await self.db.one(sql, *args)
        return None if row is None else shape._make(row)

    async def _rows(self, shape, sql, *args):
        return [shape._make(r) for r in await self.db.all(sql, *args)]

    # -- clients and vendors ---------------------------------------------------------------

    async def add_client(self, rid, parent, kind, cik, state, enabled_at=0):
        await self.db.run(
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
        """The Client holding this CIK, or None."""
        return await self._row(
            Client, f"SELECT {_CLIENT} FROM clients WHERE cik_hash = ?", secret_hash(cik)
        )

    async def client(self, rid):
        """Client or None."""
        return await self._row(Client, f"SELECT {_CLIENT} FROM clients WHERE rid = ?", rid)

    async def client_parent(self, rid):
        """The rid of the client's parent ("" for none), None when there is no such client."""
        row = await self.db.one("SELECT parent FROM clients WHERE rid = ?", rid)
        return None if row is None else (row[0] or "")

    async def set_client_cik(self, rid, cik, state, enabled_at):
        """Set (cik, sealed: a vendor's) or drop (cik None: a device's until its activation
        draws one) the client's CIK, and set its state."""
        await self.db.run(
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
        n = await self.db.run(
            "UPDATE clients SET state = 'activated', cik_hash = ?, secret = NULL "
            "WHERE rid = ? AND state = 'notactivated' AND enabled_at = ?",
            secret_hash(cik),
            rid,
            enabled_at,
        )
        return n == 1

    async def vendor_cik(self, rid):
        """A vendor's CIK, opened from its sealed copy (None for another client)."""
        sealed = await self._value(
            "SELECT secret FROM clients WHERE rid = ? AND kind = 'vendor'", rid
        )
        return self.opened(sealed, "client:" + rid)

    async def delete_client(self, rid):
        await self.db.run("DELETE FROM clients WHERE rid = ?", rid)
        await self.db.run("DELETE FROM data WHERE client_rid = ?", rid)
        await self.db.run("DELETE FROM jsonp_tokens WHERE client_rid = ?", rid)

    async def add_vendor_name(self, name, rid):
        try:
            await self.db.run("INSERT INTO vendors (name, rid) VALUES (?, ?)", name, rid)
        except Conflict:
            raise Duplicate(name)

    async def delete_vendor_name(self, name, rid):
        """Unregister; the shares made to this vendor go with its name (a client that
        registers the name next inherits nothing)."""
        async with self.tx():
            n = await self.db.run("DELETE FROM vendors WHERE name = ? AND rid = ?", name, rid)
            if n:
                await self.db.run("DELETE FROM shares WHERE vendor_rid = ?", rid)
        return n

    async def vendor_by_name(self, name):
        """VendorRow or None."""
        return await self._row(VendorRow, "SELECT name, rid FROM vendors WHERE name = ?", name)

    async def vendor_name_of(self, rid):
        return await self._value("SELECT name FROM vendors WHERE rid = ?", rid)

    async def vendors(self):
        """[VendorRow] by name."""
        return await self._rows(VendorRow, "SELECT name, rid FROM vendors ORDER BY name")

    # -- vendor tokens -----------------------------------------------------------------------

    async def token_vendor(self, token):
        return await self._value(
            "SELECT vendor_rid FROM tokens WHERE token_hash = ?", secret_hash(token)
        )

    async def add_token(self, vendor_rid, tid, token):
        try:
            await self.db.run(
                "INSERT INTO tokens (vendor_rid, tid, token_hash, secret) VALUES (?, ?, ?, ?)",
                vendor_rid,
                tid,
                secret_hash(token),
                self.sealed(token, f"token:{vendor_rid}:{tid}"),
            )
        except Conflict:
            raise Duplicate(tid)

    async def token_ids(self, vendor_rid):
        return await self._column(
            "SELECT tid FROM tokens WHERE vendor_rid = ? ORDER BY rowid", vendor_rid
        )

    async def token_secret(self, vendor_rid, tid):
        sealed = await self._value(
            "SELECT secret FROM tokens WHERE vendor_rid = ? AND tid = ?", vendor_rid, tid
        )
        return self.opened(sealed, f"token:{vendor_rid}:{tid}")

    async def delete_token(self, vendor_rid, tid):
        return await self.db.run(
            "DELETE FROM tokens WHERE vendor_rid = ? AND tid = ?", vendor_rid, tid
        )

    # -- models ----------------------------------------------------------------------------

    async def model(self, vendor_rid, name):
        """ModelRow or None."""
        row = await self.db.one(
            "SELECT id, name, template_kind, template, options FROM models "
            "WHERE vendor_rid = ? AND name = ?",
            vendor_rid,
            name,
        )
        if row is None:
            return None
        model_id, name, kind, template, options = row
        return ModelRow(model_id, name, kind, template, json.loads(options))

    async def model_name_taken(self, name):
        return await self.db.one("SELECT 1 FROM models WHERE name = ? LIMIT 1", name) is not None

    async def models(self, vendor_rid):
        return await self._column(
            "SELECT name FROM models WHERE vendor_rid = ? ORDER BY id", vendor_rid
        )

    async def add_model(self, vendor_rid, name, kind, template, options):
        try:
            await self.db.run(
                "INSERT INTO models (vendor_rid, name, template_kind, template, options) "
                "VALUES (?, ?, ?, ?, ?)",
                vendor_rid,
                name,
                kind,
                template,
                json.dumps(options),
            )
        except Conflict:
            raise Duplicate(name)

    async def update_model(self, model_id, kind, template, options):
        await self.db.run(
            "UPDATE models SET template_kind = ?, template = ?, options = ? WHERE id = ?",
            kind,
            template,
            json.dumps(options),
            model_id,
        )

    async def delete_model(self, model_id):
        """Delete a model and everything under it; returns the blob names to remove."""
        async with self.tx():
            blobs = await self._column(
                "SELECT blob FROM content WHERE model_id = ? AND blob IS NOT NULL", model_id
            )
            rids = await self._column(
                "SELECT client_rid FROM sns WHERE model_id = ? AND client_rid IS NOT NULL",
                model_id,
            )
            for rid in rids:
                await self.delete_client(rid)
            await self.db.run("DELETE FROM members WHERE model_id = ?", model_id)
            await self.db.run("DELETE FROM models WHERE id = ?", model_id)
        return blobs

    async def shared_models(self, vendor_rid):
        """[SharedModel] shared to vendor `vendor_rid`."""
        return await self._rows(
            SharedModel,
            "SELECT v.name, m.name FROM shares s JOIN models m ON m.id = s.model_id "
            "JOIN vendors v ON v.rid = m.vendor_rid WHERE s.vendor_rid = ? ORDER BY m.id",
            vendor_rid,
        )

    # -- shares ----------------------------------------------------------------------------

    # A share is kept by the vendor's rid (its identity), named by its current name.

    async def share_names(self, model_id):
        return await self._column(
            "SELECT v.name FROM shares s JOIN vendors v ON v.rid = s.vendor_rid "
            "WHERE s.model_id = ? ORDER BY s.rowid",
            model_id,
        )

    async def is_shared(self, model_id, vendor_rid):
        row = await self.db.one(
            "SELECT 1 FROM shares WHERE model_id = ? AND vendor_rid = ?", model_id, vendor_rid
        )
        return row is not None

    async def add_share(self, model_id, vendor_rid):
        try:
            await self.db.run(
                "INSERT INTO shares (model_id, vendor_rid) VALUES (?, ?)", model_id, vendor_rid
            )
        except Conflict:
            raise Duplicate(vendor_rid)

    async def delete_share(self, model_id, vendor_rid):
        return await self.db.run(
            "DELETE FROM shares WHERE model_id = ? AND vendor_rid = ?", model_id, vendor_rid
        )

    # -- serial numbers --------------------------------------------------------------------

    async def sn(self, model_id, sn):
        """Sn or None."""
        return await self._row(
            Sn,
            "SELECT sn, extra, client_rid, enabled_by FROM sns WHERE model_id = ? AND sn = ?",
            model_id,
            sn,
        )

    async def add_sns(self, model_id, pairs):
        """Add (sn, extra) pairs at once (a 100 000-line CSV is one bulk insert); Duplicate
        if any exists, and then none is added."""
        rows = [(model_id, sn, extra) for sn, extra in pairs]
        try:
            await self.db.insert_many("sns", ("model_id", "sn", "extra"), rows)
        except Conflict:
            raise Duplicate("serial number")

    async def ensure_sn(self, model_id, sn):
        """Materialise a serial number that is whitelisted through a range."""
        await self.db.run(
            "INSERT INTO sns (model_id, sn) VALUES (?, ?) ON CONFLICT DO NOTHING", model_id, sn
        )

    async def delete_sns(self, model_id, sns):
        """Delete serial numbers and their clients; returns how many existed."""
        count = 0
        async with self.tx():
            for sn in sns:
                row = await self.sn(model_id, sn)
                if row is None:
                    continue
                if row.client_rid:
                    await self.delete_client(row.client_rid)
                await self.db.run("DELETE FROM sns WHERE model_id = ? AND sn = ?", model_id, sn)
                count += 1
        return count

    async def list_sns(self, model_id, offset, limit, enabled_by=None):
        """[SnListed] in insertion order."""
        sql = (
            "SELECT s.sn, s.extra, s.client_rid, c.state, c.enabled_at FROM sns s "
            "LEFT JOIN clients c ON c.rid = s.client_rid WHERE s.model_id = ?"
        )
        args = [model_id]
        if enabled_by is not None:
            sql += " AND s.enabled_by = ?"
            args.append(enabled_by)
        sql += " ORDER BY s.rowid LIMIT ? OFFSET ?"
        return await self._rows(SnListed, sql, *args, limit, offset)

    async def set_sn_client(self, model_id, sn, client_rid, enabled_by):
        await self.db.run(
            "UPDATE sns SET client_rid = ?, enabled_by = ? WHERE model_id = ? AND sn = ?",
            client_rid,
            enabled_by,
            model_id,
            sn,
        )

    async def sn_of_client(self, client_rid):
        """The SnRef this device client belongs to, or None."""
        return await self._row(
            SnRef, "SELECT model_id, sn FROM sns WHERE client_rid = ?", client_rid
        )

    async def device_view(self, cik, vendor, model):
        """The download path's lookups in one query: DeviceView(client_by_cik(cik), id of
        model `model` of vendor `vendor` or None, sn_of_client(its rid))."""
        row = await self.db.one(
            "SELECT c.rid, c.parent, c.kind, c.state, c.enabled_at, c.secret, s.model_id, s.sn, "
            "(SELECT m.id FROM vendors v JOIN models m ON m.vendor_rid = v.rid "
            " WHERE v.name = ? AND m.name = ?) "
            "FROM clients c LEFT JOIN sns s ON s.client_rid = c.rid WHERE c.cik_hash = ?",
            vendor,
            model,
            secret_hash(cik),
        )
        if row is None:
            return DeviceView(None, None, None)
        *client, model_id, sn, wanted = row
        mine = SnRef(model_id, sn) if model_id is not None else None
        return DeviceView(Client._make(client), wanted, mine)

    # -- ranges ----------------------------------------------------------------------------

    async def ranges(self, model_id):
        specs = await self._column(
            "SELECT spec FROM ranges WHERE model_id = ? ORDER BY id", model_id
        )
        return [json.loads(spec) for spec in specs]

    async def range_count(self, model_id):
        return await self._value("SELECT COUNT(*) FROM ranges WHERE model_id = ?", model_id)

    async def add_ranges(self, model_id, specs):
        async with self.tx():
            for spec in specs:
                await self.db.run(
                    "INSERT INTO ranges (model_id, spec) VALUES (?, ?)",
                    model_id,
                    json.dumps(spec, sort_keys=True),
                )

    async def delete_ranges(self, model_id, specs):
        count = 0
        async with self.tx():
            for spec in specs:
                count += await self.db.run(
                    "DELETE FROM ranges WHERE model_id = ? AND spec = ?",
                    model_id,
                    json.dumps(spec, sort_keys=True),
                )
        return count

    # -- activation log --------------------------------------------------------------------

    async def log_activation(self, model_id, sn, ts, conn, what):
        async with self.tx():
            await self.db.run(
                "INSERT INTO actlog (model_id, sn, ts, conn, what) VALUES (?, ?, ?, ?, ?)",
                model_id,
                sn,
                ts,
                conn,
                what,
            )
            await self.db.run(
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
        """[LogLine], oldest first."""
        return await self._rows(
            LogLine,
            "SELECT ts, conn, what FROM actlog WHERE model_id = ? AND sn = ? ORDER BY id",
            model_id,
            sn,
        )

    # -- content ---------------------------------------------------------------------------

    async def content(self, model_id, cid):
        """dict(cid, meta, protected, ctype, size, updated, blob) or None."""
        row = await self.db.one(
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
        """[ContentItem] in creation order."""
        return await self._rows(
            ContentItem,
            "SELECT cid, protected FROM content WHERE model_id = ? ORDER BY rowid",
            model_id,
        )

    async def add_content(self, model_id, cid, meta, protected):
        try:
            await self.db.run(
                "INSERT INTO content (model_id, cid, meta, protected) VALUES (?, ?, ?, ?)",
                model_id,
                cid,
                meta,
                int(protected),
            )
        except Conflict:
            raise Duplicate(cid)

    async def set_blob(self, model_id, cid, blob, ctype, size, updated):
        """Point the content at a new blob; returns the old blob name, or False if gone.

        `updated` moves forward at least one second per upload, so that Last-Modified
        names one upload and can serve as an If-Range validator."""
        async with self.tx():
            row = await self.db.one(
                "SELECT blob, updated FROM content WHERE model_id = ? AND cid = ?"
                + self.dialect.for_update,
                model_id,
                cid,
            )
            if row is None:
                return False
            old, was = row
            updated = max(updated, was + 1)
            await self.db.run(
                "UPDATE content SET blob = ?, ctype = ?, size = ?, updated = ? "
                "WHERE model_id = ? AND cid = ?",
                blob,
                ctype,
                size,
                updated,
                model_id,
                cid,
            )
        return old

    async def delete_content(self, model_id, cid):
        """Returns (existed, blob name or None)."""
        async with self.tx():
            row = await self.db.one(
                "SELECT blob FROM content WHERE model_id = ? AND cid = ?", model_id, cid
            )
            if row is None:
                return False, None
            (blob,) = row
            await self.db.run("DELETE FROM content WHERE model_id = ? AND cid = ?", model_id, cid)
            await self.db.run(
                "DELETE FROM members WHERE model_id = ? AND type = 'content' AND mid = ?",
                model_id,
                cid,
            )
        return True, blob

    async def all_blobs(self):
        return set(await self._column("SELECT blob FROM content WHERE blob IS NOT NULL"))

    # -- groups ----------------------------------------------------------------------------

    async def group(self, model_id, gid):
        """Group or None."""
        return await self._row(
            Group,
            "SELECT g.meta, (SELECT COUNT(*) FROM members m WHERE m.model_id = g.model_id "
            "AND m.gid = g.gid) FROM groups g WHERE g.model_id = ? AND g.gid = ?",
            model_id,
            gid,
        )

    async def groups(self, model_id, offset, limit):
        """[GroupItem] in creation order."""
        return await self._rows(
            GroupItem,
            "SELECT gid, meta FROM groups WHERE model_id = ? ORDER BY rowid LIMIT ? OFFSET ?",
            model_id,
            limit,
            offset,
        )

    async def add_group(self, model_id, gid, meta):
        try:
            await self.db.run(
                "INSERT INTO groups (model_id, gid, meta) VALUES (?, ?, ?)", model_id, gid, meta
            )
        except Conflict:
            raise Duplicate(gid)

    async def delete_group(self, model_id, gid):
        async with self.tx():
            n = await self.db.run(
                "DELETE FROM groups WHERE model_id = ? AND gid = ?", model_id, gid
            )
            await self.db.run(
                "DELETE FROM members WHERE model_id = ? AND type = 'group' AND mid = ?",
                model_id,
                gid,
            )
        return n

    async def upsert_members(self, model_id, gid, rows):
        """rows: [(type, mid, expire, meta)]."""
        async with self.tx():
            for type_, mid, expire, meta in rows:
                await self.db.run(
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
                count += await self.db.run(
                    "DELETE FROM members WHERE model_id = ? AND gid = ? AND type = ? AND mid = ?",
                    model_id,
                    gid,
                    type_,
                    mid,
                )
        return count

    async def members(self, model_id, gid, type_=None, mid=None, offset=0, limit=1000):
        """[Member] in insertion order."""
        sql = "SELECT type, mid, expire, meta FROM members WHERE model_id = ? AND gid = ?"
        args = [model_id, gid]
        if type_ is not None:
            sql += " AND type = ?"
            args.append(type_)
        if mid is not None:
            sql += " AND mid = ?"
            args.append(mid)
        sql += " ORDER BY rowid LIMIT ? OFFSET ?"
        return await self._rows(Member, sql, *args, limit, offset)

    async def groups_of(self, model_id, type_, mid, offset=0, limit=1000, now=None):
        """Ids of the groups holding member (type, mid); with `now`, only unexpired ones."""
        sql = "SELECT gid FROM members WHERE model_id = ? AND type = ? AND mid = ?"
        args = [model_id, type_, mid]
        if now is not None:
            sql += " AND (expire = 0 OR expire > ?)"
            args.append(now)
        sql += " ORDER BY rowid LIMIT ? OFFSET ?"
        return await self._column(sql, *args, limit, offset)

    # -- data interface and jsonp ----------------------------------------------------------

    async def write_data(self, client_rid, ts, pairs):
        async with self.tx():
            for alias, value in pairs:
                await self.db.run(
                    "INSERT INTO data (client_rid, alias, ts, value) VALUES (?, ?, ?, ?)",
                    client_rid,
                    alias,
                    ts,
                    value,
                )
                await self.db.run(
                    "DELETE FROM data WHERE client_rid = ? AND alias = ? AND id <= ("
                    "SELECT id FROM data WHERE client_rid = ? AND alias = ? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    client_rid,
                    alias,
                    client_rid,
                    alias,
                    DATA_KEEP,
                )
                # and the oldest values past ALIAS_KEEP_CHARS of this alias's history
                await self.db.run(
                    "DELETE FROM data WHERE id IN (SELECT id FROM (SELECT id, "
                    "SUM(LENGTH(value)) OVER (ORDER BY id DESC) AS kept, "
                    "ROW_NUMBER() OVER (ORDER BY id DESC) AS n "
                    "FROM data WHERE client_rid = ? AND alias = ?) t WHERE kept > ? AND n > 1)",
                    client_rid,
                    alias,
                    ALIAS_KEEP_CHARS,
                )

    async def alias_names(self, client_rid, limit):
        """How many alias names `client_rid` has values for, counted up to `limit`."""
        return await self._value(
            "SELECT COUNT(*) FROM (SELECT DISTINCT alias FROM data WHERE client_rid = ? "
            "LIMIT ?) t",
            client_rid,
            limit,
        )

    async def content_bytes(self, vendor_rid):
        """Bytes of content uploaded to the models `vendor_rid` owns."""
        return await self._value(
            "SELECT COALESCE(SUM(c.size), 0) FROM content c JOIN models m ON m.id = c.model_id "
            "WHERE m.vendor_rid = ?",
            vendor_rid,
        )

    async def latest(self, client_rid, alias):
        return await self._value(
            "SELECT value FROM data WHERE client_rid = ? AND alias = ? ORDER BY id DESC LIMIT 1",
            client_rid,
            alias,
        )

    async def series(self, client_rid, alias, start, end, offset, limit):
        """[Point] by time."""
        return await self._rows(
            Point,
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
        await self.db.run("DELETE FROM jsonp_tokens WHERE expire < ?", int(spec.get("now", 0)))
        await self.db.run(
            "INSERT INTO jsonp_tokens (token_hash, client_rid, spec, expire) VALUES (?, ?, ?, ?)",
            secret_hash(token),
            client_rid,
            json.dumps(spec),
            expire,
        )

    async def jsonp_token(self, token):
        """JsonpToken or None."""
        row = await self.db.one(
            "SELECT client_rid, spec, expire FROM jsonp_tokens WHERE token_hash = ?",
            secret_hash(token),
        )
        if row is None:
            return None
        client_rid, spec, expire = row
        return JsonpToken(client_rid, json.loads(spec), expire)

    # -- device status: last heard from, and what the device last reported ----------------

    async def heard(self, model_id, sn, ts, address):
        """A device call for serial number `sn` from `address` at `ts`: sets its `last_seen`
        and `address`. Nothing happens for a serial number not in the model's list."""
        try:
            await self.db.run(
                "INSERT INTO devstatus (model_id, sn, last_seen, address) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model_id, sn) DO UPDATE SET last_seen = excluded.last_seen, "
                "address = excluded.address",
                model_id,
                sn,
                ts,
                address,
            )
        except Conflict:  # not whitelisted (or deleted meanwhile)
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
            await self.db.run(
                f"INSERT INTO devstatus ({names}) VALUES ({', '.join('?' * (5 + len(cols)))}) "
                f"ON CONFLICT (model_id, sn) DO UPDATE SET {', '.join(sets)}",
                model_id,
                sn,
                ts,
                address,
                ts,
                *[fields[c] for c in cols],
            )
        except Conflict:
            pass

    async def device_status(self, model_id, sn):
        """dict(sn, *STATUS_KEYS) of one serial number, or None when its device never called:
        last_seen, reported, error_at: unix seconds or None; address, state, version,
        content ("id:updated"), error, target: str or None; boots, rollbacks, progress
        (percent, only while downloading): int or None."""
        row = await self.db.one(
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
            sql += f" AND {self.dialect.find}(s.sn, ?) > 0"
            args.append(search)
        sql += " ORDER BY s.rowid LIMIT ? OFFSET ?"
        keys = ("sn", "client_rid", "client_state", "enabled_at", *STATUS_KEYS)
        rows = await self.db.all(sql, *args, limit, offset)
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
        rows = await self.db.all(
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

    # -- dashboard sessions and pages (tools/server/ui) ------------------------------------

    async def add_ui_session(self, id_hash, vendor_rid, cred_hash, expire, now):
        """A dashboard session: only the hash of its cookie, the vendor, the hash of the CIK
        or token it logged in with (the session lives only as long as that credential does)
        and its expiry."""
        async with self.tx():
            await self.db.run("DELETE FROM ui_sessions WHERE expire <= ?", now)
            await self.db.run(
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
        return await self._value(
            "SELECT s.vendor_rid FROM ui_sessions s WHERE s.id_hash = ? AND s.expire > ? AND ("
            "EXISTS (SELECT 1 FROM clients c WHERE c.rid = s.vendor_rid "
            "AND c.cik_hash = s.cred_hash) OR EXISTS (SELECT 1 FROM tokens t "
            "WHERE t.vendor_rid = s.vendor_rid AND t.token_hash = s.cred_hash))",
            id_hash,
            now,
        )

    async def delete_ui_session(self, id_hash):
        return await self.db.run("DELETE FROM ui_sessions WHERE id_hash = ?", id_hash)

    async def delete_ui_sessions_of(self, vendor_rid):
        return await self.db.run("DELETE FROM ui_sessions WHERE vendor_rid = ?", vendor_rid)

    # -- secrets at rest (atrest.py) -------------------------------------------------------

    async def secret_rows(self):
        """[(table, key 1, key 2, kind, state, secret)] of every stored secret: clients by
        rid, tokens by (vendor rid, token id)."""
        return await self.db.all(
            "SELECT 'clients', rid, '', kind, state, secret FROM clients "
            "WHERE secret IS NOT NULL UNION ALL "
            "SELECT 'tokens', vendor_rid, tid, '', '', secret FROM tokens"
        )

    async def put_secret(self, table, k1, k2, old, new, drop_cik=False):
        """Replace a secret that still is `old`; drop_cik: the client's CIK hash too.
        Returns 1 if it was replaced."""
        if table == "tokens":
            return await self.db.run(
                "UPDATE tokens SET secret = ? WHERE vendor_rid = ? AND tid = ? AND secret = ?",
                new,
                k1,
                k2,
                old,
            )
        drop = ", cik_hash = NULL" if drop_cik else ""
        return await self.db.run(
            f"UPDATE clients SET secret = ?{drop} WHERE rid = ? AND secret = ?", new, k1, old
        )

    async def scrub(self):
        """Have the engine rewrite what holds the two tables, so that no old page or row
        version keeps what put_secret replaced."""
        await self.db.compact(("clients", "tokens"))

    async def sn_count(self, model_id):
        return await self._value("SELECT COUNT(*) FROM sns WHERE model_id = ?", model_id)

    async def sn_page(self, model_id, page):
        """One page of a model's serial numbers in sn order, by keyset (`after` / `before` an
        sn, the primary key's order) so that a page costs the same at row 100 000 as at row 1.
        page: dict(limit, after, before, search, status, version, enabled_by, now, window);
        status is the spec's (activated, notactivated, expired) or "none" (no client).
        Rows: [SnPageRow]."""
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
            sql.append(f"AND {self.dialect.find}(s.sn, ?) > 0")
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
                    "none": f"AND {self.dialect.noindex}s.client_rid IS NULL",
                }[status]
            )
            if status in ("notactivated", "expired"):
                args += [page["window"], page["now"]]
        sql.append(f"ORDER BY {key} {'DESC' if backwards else 'ASC'} LIMIT ?")
        args.append(page["limit"])
        rows = await self._rows(SnPageRow, " ".join(sql), *args)
        return rows[::-1] if backwards else rows
