"""`exoprov fleet`: the vendor's command line over `exoprov.fleet.client`.

Every error ends in one line `exoprov: <what failed>: <status> <reason>` on stderr, exit 1
(2 for usage and configuration errors). Credentials are read from flags, the environment or a
0600 config file, and never printed.
"""

import argparse
import csv
import datetime
import io
import json
import os
import stat
import sys

from .client import DEFAULT_SERVER, PAGE_MAX, Client, format_meta, parse_meta, sha256_file
from .errors import NotFound, ProvisionError
from .output import Done, Progress, Table, emit

CONFIG_DEFAULT = "~/.config/exoprov/fleet.json"
RANGE_FORMATS = ("base10", "base16", "mac:48", "mac-48", "mac.48")
_BATCH_BYTES = 48 * 1024  # form and CSV bodies stay under the server's 64 KiB cap


class UsageError(Exception):
    """Bad arguments or configuration: exit 2."""


class StepError(Exception):
    """A procedure failed in the middle of a command; `done` holds what already succeeded."""

    def __init__(self, what, err, done=None):
        super().__init__(what)
        self.what = what
        self.err = err
        self.done = done


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog.removeprefix('exoprov ')}: {message}")


def _step(what, fn, *args, done=None, **kw):
    try:
        return fn(*args, **kw)
    except ProvisionError as err:
        raise StepError(what, err, done)


# -- configuration --------------------------------------------------------------------------


def load_config(path):
    """The config file as a dict; refused unless only its owner can read it (0600)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(st.st_mode)
        raise UsageError(
            f"config file {path} is mode {mode:04o}; it holds credentials: chmod 600 it"
        )
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"config file {path} is not readable JSON ({type(exc).__name__})")
    if not isinstance(cfg, dict):
        raise UsageError(f"config file {path} must hold a JSON object")
    return cfg


def settings(a, env=None):
    """server, cik, token, owner from flags, then environment, then the config file."""
    env = os.environ if env is None else env
    path = a.config or env.get("EXOPROV_CONFIG")
    cfg = {}
    home = env.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, CONFIG_DEFAULT[2:])
    if path:
        cfg = load_config(path)
    elif os.path.exists(default):
        cfg = load_config(default)

    def pick(flag, var, key, default=None):
        return flag or env.get(var) or cfg.get(key) or default

    out = {
        "server": pick(a.server, "EXOPROV_SERVER", "server", DEFAULT_SERVER),
        "cik": pick(a.cik, "EXOPROV_CIK", "cik"),
        "token": pick(a.token, "EXOPROV_TOKEN", "token"),
        "owner": pick(getattr(a, "owner", None), "EXOPROV_OWNER", "owner"),
    }
    if not out["cik"] and not out["token"]:
        raise UsageError(
            "no credentials: give --cik or --token, set EXOPROV_CIK or "
            f"EXOPROV_TOKEN, or put them in {CONFIG_DEFAULT} (mode 0600)"
        )
    return out


# -- input files ----------------------------------------------------------------------------


def _open_text(path):
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    return open(path, encoding="utf-8", newline="")


def read_csv(path, width):
    """Rows of at most `width` fields; blank lines, '#' comments and a header are skipped."""
    with _open_text(path) as f:
        rows = []
        for i, row in enumerate(csv.reader(f)):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if i == 0 and row[0].strip().lower() in ("sn", "type", "serial", "serialnumber"):
                continue
            row = [v.strip() for v in row[: width - 1]] + [",".join(row[width - 1 :])]
            rows.append(row + [""] * (width - len(row)))
        return rows


def batches(items, size_of):
    """Split `items` so that each batch's body stays under the server's body cap."""
    batch, used = [], 0
    for item in items:
        n = size_of(item)
        if batch and used + n > _BATCH_BYTES:
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += n
    if batch:
        yield batch


def parse_range(text, fmt, length=None, casing=None):
    """`FIRST-LAST` (or `FIRST..LAST`) in the format's notation -> a range object."""
    if ".." in text:
        first, _, last = text.partition("..")
    elif text.count("-") == 1:
        first, _, last = text.partition("-")
    elif text.count("-") % 2 == 1:  # mac-48 addresses: split at the middle hyphen
        parts = text.split("-")
        half = len(parts) // 2
        first, last = "-".join(parts[:half]), "-".join(parts[half:])
    else:
        raise UsageError(f"range {text!r} is not FIRST-LAST")
    base = 10 if fmt == "base10" else 16
    digits = [
        v.replace(":", "").replace("-", "").replace(".", "") if fmt.startswith("mac") else v
        for v in (first.strip(), last.strip())
    ]
    try:
        lo, hi = (int(v, base) for v in digits)
    except ValueError:
        raise UsageError(f"range {text!r} is not a {fmt} range")
    if lo > hi:
        raise UsageError(f"range {text!r} ends before it starts")
    rng = {"format": fmt, "first": lo, "last": hi}
    if not fmt.startswith("mac"):
        rng["length"] = length or len(digits[0])
    if casing:
        rng["casing"] = casing
    return rng


# -- commands: models -----------------------------------------------------------------------


def model_list(c, a):
    if a.shared:
        return Table(["vendor", "model"], c.shared_models())
    return Table(["model"], [[m] for m in c.models()])


def model_create(c, a):
    c.model_create(a.model, rid=a.rid, code=a.code, options=a.option)
    return Done(f"created model {a.model}", model=a.model)


def model_info(c, a):
    info = c.model_info(a.model)
    return Table(
        ["model", "rid", "code", "options"],
        [[a.model, info.rid, info.code, " ".join(info.options)]],
    )


def model_update(c, a):
    c.model_update(a.model, rid=a.rid, code=a.code, options=a.option)
    return Done(f"updated model {a.model}", model=a.model)


def model_delete(c, a):
    c.model_delete(a.model)
    return Done(f"deleted model {a.model} with its serial numbers and content", model=a.model)


# -- commands: serial numbers ---------------------------------------------------------------


def sn_list(c, a):
    if a.limit is not None or a.offset:
        rows = c.sn_list(a.model, a.offset, a.limit, a.shared_by, status=True)
    else:
        rows = c.sn_all(a.model, a.shared_by, status=True)
    return Table(["sn", "status", "rid", "extra"], rows)


def sn_add(c, a):
    modes = sum(bool(x) for x in (a.sn, a.range, a.csv))
    if modes != 1:
        raise UsageError("sn add: give serial numbers, --range or --csv (one of them)")
    if a.range:
        rng = parse_range(a.range, a.format, a.length, a.casing)
        c.sn_add_ranges(a.model, [rng])
        n = rng["last"] - rng["first"] + 1
        return Done(
            f"whitelisted {n} serial numbers ({a.range}, {a.format}) in model {a.model}",
            model=a.model,
            count=n,
            range=rng,
        )
    if a.csv:
        rows = [(r[0], r[1]) for r in read_csv(a.csv, 2) if r[0]]
        added = 0
        for batch in batches(rows, lambda r: len(r[0]) + len(r[1]) + 2):
            _step(
                f"add serial numbers {batch[0][0]}..{batch[-1][0]} to model {a.model}",
                c.sn_add_csv,
                a.model,
                batch,
            )
            added += len(batch)
        return Done(
            f"added {added} serial numbers from {a.csv} to model {a.model}",
            model=a.model,
            count=added,
        )
    if len(a.sn) == 1:
        c.sn_add(a.model, a.sn[0], a.extra)
    else:
        for batch in batches(a.sn, lambda s: len(s) * 3 + 8):
            _step(
                f"add serial numbers {batch[0]}..{batch[-1]} to model {a.model}",
                c.sn_add_many,
                a.model,
                batch,
            )
    return Done(
        f"added {len(a.sn)} serial number(s) to model {a.model}", model=a.model, count=len(a.sn)
    )


def sn_remove(c, a):
    modes = sum(bool(x) for x in (a.sn, a.range, a.csv))
    if modes != 1:
        raise UsageError("sn remove: give serial numbers, --range or --csv (one of them)")
    if a.range:
        rng = parse_range(a.range, a.format, a.length, a.casing)
        c.sn_remove_ranges(a.model, [rng])
        return Done(f"removed range {a.range} from model {a.model}", model=a.model, range=rng)
    if a.csv:
        sns = [r[0] for r in read_csv(a.csv, 2) if r[0]]
        for batch in batches(sns, lambda s: len(s) + 1):
            _step(
                f"remove serial numbers {batch[0]}..{batch[-1]} from model {a.model}",
                c.sn_remove_csv,
                a.model,
                batch,
            )
        return Done(
            f"removed {len(sns)} serial numbers from model {a.model}",
            model=a.model,
            count=len(sns),
        )
    if len(a.sn) == 1:
        c.sn_remove(a.model, a.sn[0])
    else:
        for batch in batches(a.sn, lambda s: len(s) * 3 + 8):
            _step(
                f"remove serial numbers {batch[0]}..{batch[-1]} from model {a.model}",
                c.sn_remove_many,
                a.model,
                batch,
            )
    return Done(
        f"removed {len(a.sn)} serial number(s) from model {a.model}",
        model=a.model,
        count=len(a.sn),
    )


def sn_ranges(c, a):
    rows = [
        [r.get("format"), r.get("length", ""), r.get("casing", ""), r.get("first"), r.get("last")]
        for r in c.sn_ranges(a.model)
    ]
    return Table(["format", "length", "casing", "first", "last"], rows)


def sn_info(c, a):
    info = c.sn_info(a.model, a.sn)
    if info is None:
        return Table(["sn", "status", "rid", "extra"], [[a.sn, "unused", "", ""]])
    return Table(["sn", "status", "rid", "extra"], [[a.sn, *info]])


def sn_groups(c, a):
    return Table(["group"], [[g] for g in c.sn_groups(a.model, a.sn, a.offset, a.limit)])


def sn_log(c, a):
    rows = [[_when(e.timestamp), e.connection, e.entry] for e in c.sn_log(a.model, a.sn)]
    return Table(["time", "from", "event"], rows)


def _each_sn(c, a, verb, fn, *extra):
    rows = []
    for sn in a.sn:
        what = f"{verb} {sn} of model {a.model}"
        out = _step(what, fn, a.model, sn, *extra, done=Table(["sn", "result"], rows))
        rows.append([sn, out if out is not None else verb + "d"])
    return rows


def sn_enable(c, a):
    if not a.owner:
        raise UsageError("sn enable needs --owner RID (or EXOPROV_OWNER): the client's owner")
    rows = []
    for sn in a.sn:
        rid = _step(
            f"enable {sn} of model {a.model}",
            c.sn_enable,
            a.model,
            sn,
            a.owner,
            done=Table(["sn", "rid"], rows),
        )
        rows.append([sn, rid])
    return Table(["sn", "rid"], rows)


def sn_regenerate(c, a):
    return Table(["sn", "result"], _each_sn(c, a, "regenerate", c.sn_regenerate))


def sn_disable(c, a):
    return Table(["sn", "result"], _each_sn(c, a, "disable", c.sn_disable))


def sn_delete(c, a):
    rows = _each_sn(c, a, "delete", c.sn_delete)
    return Table(["sn", "result"], [[sn, "deleted"] for sn, _ in rows])


def sn_remap(c, a):
    c.sn_remap(a.model, a.sn, a.old)
    return Done(
        f"moved the client of {a.old} to {a.sn} in model {a.model}; {a.sn} must activate",
        model=a.model,
        sn=a.sn,
        oldsn=a.old,
    )


def sn_status(c, a):
    rows = []
    for e in c.sn_all(a.model, a.shared_by, status=True):
        when = event = ""
        if not a.no_log:
            log = _step(f"read the activation log of {e.sn}", c.sn_log, a.model, e.sn)
            if log:
                last = max(log, key=lambda x: x.timestamp if isinstance(x.timestamp, int) else 0)
                when, event = _when(last.timestamp), last.entry
        rows.append([e.sn, e.status or "-", e.rid, when, event])
    return Table(["sn", "status", "rid", "last_activation", "result"], rows)


def _when(ts):
    if not isinstance(ts, int):
        return str(ts)
    t = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- commands: content ----------------------------------------------------------------------


def content_list(c, a):
    return Table(["id"], [[i] for i in c.content_list(a.model, a.sn)])


def content_create(c, a):
    c.content_create(a.model, a.id, a.meta, a.protected)
    return Done(f"created content {a.id} in model {a.model}", model=a.model, id=a.id)


def content_info(c, a):
    i = c.content_info(a.model, a.id, a.sn)
    cols = ["id", "type", "size", "updated", "meta"] + ([] if a.sn else ["protected"])
    row = [a.id, i.content_type, i.size, i.updated, i.meta]
    if not a.sn:
        row.append("true" if i.protected else "false")
    return Table(cols, [row])


def content_groups(c, a):
    return Table(["group"], [[g] for g in c.content_groups(a.model, a.id, a.offset, a.limit)])


def content_delete(c, a):
    c.content_delete(a.model, a.id)
    return Done(f"deleted content {a.id} of model {a.model}", model=a.model, id=a.id)


def content_upload(c, a, progress_out=None):
    size = os.path.getsize(a.file)
    digest = sha256_file(a.file)
    try:
        info = c.content_info(a.model, a.id)
    except NotFound:
        info = None
    meta = parse_meta(info.meta) if info else {}
    meta.pop("sha256", None)
    meta.pop("version", None)
    new = {"sha256": digest, **({"version": a.version} if a.version else {}), **meta}
    protected = bool(a.protected or (info and info.protected))
    if info is None:
        _step(
            f"create content {a.id} in model {a.model}",
            c.content_create,
            a.model,
            a.id,
            format_meta(new),
            protected,
        )
    elif parse_meta(info.meta) != new or protected != info.protected:
        _recreate(c, a, format_meta(new), protected)
    bar = Progress(f"upload {a.id}", _show_progress(a), progress_out)
    with open(a.file, "rb") as f:
        _step(
            f"upload {a.file} to content {a.id} of model {a.model}",
            c.content_upload,
            a.model,
            a.id,
            f,
            a.type,
            size,
            bar,
        )
    bar(size, size)
    extra = f", version {a.version}" if a.version else ""
    return Done(
        f"uploaded {a.file} to content {a.id} of model {a.model} ({size} bytes"
        f"{extra}, sha256 {digest})",
        model=a.model,
        id=a.id,
        size=size,
        sha256=digest,
        version=a.version or "",
    )


def _recreate(c, a, meta, protected):
    """No procedure changes a content's meta: create it again, keeping its group memberships."""
    groups = _all(lambda off: c.content_groups(a.model, a.id, off, PAGE_MAX))
    members = []
    for g in groups:
        for m in c.group_members(a.model, g, type="content", member=a.id):
            members.append((g, m))
    _step(f"replace content {a.id} of model {a.model}", c.content_delete, a.model, a.id)
    _step(
        f"create content {a.id} in model {a.model}",
        c.content_create,
        a.model,
        a.id,
        meta,
        protected,
    )
    for g, m in members:
        _step(
            f"put content {a.id} back into group {g}",
            c.group_add,
            a.model,
            g,
            "content",
            [a.id],
            m.expire,
            m.meta,
        )


def content_download(c, a, progress_out=None):
    dest = a.output or os.path.basename(a.id.replace("\\", "/")) or "content.bin"
    bar = Progress(f"download {a.id}", _show_progress(a), progress_out)
    info = c.content_download(a.model, a.id, dest, sn=a.sn, progress=bar, verify=not a.no_verify)
    digest = parse_meta(info.meta).get("sha256")
    checked = "not checked" if a.no_verify or not digest else "checked"
    note = f"sha256 {checked}" if digest else "no sha256 in meta: not verified"
    return Done(
        f"downloaded content {a.id} of model {a.model} to {dest} ({info.size} bytes, {note})",
        model=a.model,
        id=a.id,
        path=dest,
        size=info.size,
        verified=bool(digest and not a.no_verify),
    )


def _show_progress(a):
    if a.progress is not None:
        return a.progress
    return sys.stderr.isatty()


def _all(fetch):
    out, off = [], 0
    while True:
        rows = fetch(off)
        out += rows
        if len(rows) < PAGE_MAX:
            return out
        off += len(rows)


# -- commands: groups -----------------------------------------------------------------------


def group_list(c, a):
    if a.limit is not None or a.offset:
        rows = c.group_list(a.model, a.offset, a.limit)
    else:
        rows = _all(lambda off: c.group_list(a.model, off, PAGE_MAX))
    return Table(["group", "meta"], rows)


def group_create(c, a):
    c.group_create(a.model, a.group, a.meta)
    return Done(f"created group {a.group} in model {a.model}", model=a.model, group=a.group)


def group_info(c, a):
    i = c.group_info(a.model, a.group)
    return Table(["group", "meta", "members"], [[a.group, i.meta, i.count]])


def group_groups(c, a):
    return Table(["group"], [[g] for g in c.group_groups(a.model, a.group, a.offset, a.limit)])


def group_delete(c, a):
    c.group_delete(a.model, a.group)
    return Done(f"deleted group {a.group} of model {a.model}", model=a.model, group=a.group)


def group_members(c, a):
    if a.limit is not None or a.offset:
        rows = c.group_members(a.model, a.group, a.type, a.id, a.offset, a.limit)
    else:
        rows = _all(lambda off: c.group_members(a.model, a.group, a.type, a.id, off, PAGE_MAX))
    return Table(["type", "id", "expire", "meta"], rows)


def group_add(c, a):
    if bool(a.csv) == bool(a.member):
        raise UsageError("group add: give --type TYPE MEMBER... or --csv FILE (one of them)")
    if a.csv:
        rows = [tuple(r) for r in read_csv(a.csv, 4) if r[1]]
        for batch in batches(rows, lambda r: sum(len(v) for v in r) + 4):
            _step(f"add members to group {a.group}", c.group_add_csv, a.model, a.group, batch)
        n = len(rows)
    else:
        if not a.type:
            raise UsageError("group add: --type is needed with member ids")
        for batch in batches(a.member, lambda s: len(s) * 3 + 8):
            _step(
                f"add members to group {a.group}",
                c.group_add,
                a.model,
                a.group,
                a.type,
                batch,
                a.expire,
                a.meta,
            )
        n = len(a.member)
    return Done(
        f"added or updated {n} member(s) of group {a.group}", model=a.model, group=a.group, count=n
    )


def group_remove(c, a):
    if bool(a.csv) == bool(a.member):
        raise UsageError("group remove: give --type TYPE MEMBER... or --csv FILE")
    if a.csv:
        pairs = [(r[0], r[1].split(",")[0]) for r in read_csv(a.csv, 2) if r[1]]
        for batch in batches(pairs, lambda r: len(r[0]) + len(r[1]) + 2):
            _step(
                f"remove members of group {a.group}", c.group_remove_csv, a.model, a.group, batch
            )
        n = len(pairs)
    else:
        if not a.type:
            raise UsageError("group remove: --type is needed with member ids")
        for batch in batches(a.member, lambda s: len(s) * 3 + 8):
            _step(
                f"remove members of group {a.group}",
                c.group_remove,
                a.model,
                a.group,
                a.type,
                batch,
            )
        n = len(a.member)
    return Done(f"removed {n} member(s) of group {a.group}", model=a.model, group=a.group, count=n)


# -- commands: shares, tokens, vendor -------------------------------------------------------


def share_list(c, a):
    return Table(["vendor"], [[v] for v in c.share_list(a.model)])


def share_add(c, a):
    c.share_create(a.model, a.vendor)
    return Done(f"shared model {a.model} with {a.vendor}", model=a.model, vendor=a.vendor)


def share_check(c, a):
    shared = c.share_exists(a.model, a.vendor)
    return Table(["model", "vendor", "shared"], [[a.model, a.vendor, "yes" if shared else "no"]])


def share_remove(c, a):
    c.share_delete(a.model, a.vendor)
    return Done(
        f"model {a.model} is no longer shared with {a.vendor}", model=a.model, vendor=a.vendor
    )


def token_list(c, a):
    return Table(["id"], [[t] for t in c.token_list()])


def token_create(c, a):
    return Table(["id", "token"], [[a.id, c.token_create(a.id)]])


def token_show(c, a):
    return Table(["id", "token"], [[a.id, c.token_get(a.id)]])


def token_delete(c, a):
    c.token_delete(a.id)
    return Done(f"deleted token {a.id}", id=a.id)


def vendor_show(c, a):
    return Table(["vendor"], [[c.vendor_name()]])


def vendor_register(c, a):
    c.vendor_register(a.name)
    return Done(f"registered vendor name {a.name}", vendor=a.name)


def vendor_unregister(c, a):
    c.vendor_unregister(a.name)
    return Done(f"unregistered vendor name {a.name}", vendor=a.name)


# -- parser ---------------------------------------------------------------------------------


def _common():
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    g = p.add_argument_group("connection and output")
    g.add_argument("--server", default=s, help=f"server URL (EXOPROV_SERVER; {DEFAULT_SERVER})")
    g.add_argument("--cik", default=s, help="vendor CIK (EXOPROV_CIK)")
    g.add_argument("--token", default=s, help="vendor token (EXOPROV_TOKEN)")
    g.add_argument("--config", default=s, help=f"config file, mode 0600 ({CONFIG_DEFAULT})")
    g.add_argument(
        "--vendor",
        dest="as_vendor",
        default=s,
        help="act on this vendor's shared model (X-Exosite-Vendor)",
    )
    g.add_argument(
        "--json", dest="fmt", action="store_const", const="json", default=s, help="JSON output"
    )
    return p


def _paging(p):
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="one page of 5..1000 (else all)")


def _range_opts(p):
    p.add_argument("--range", help="FIRST-LAST in the format's notation")
    p.add_argument("--format", choices=RANGE_FORMATS, default="base10")
    p.add_argument("--length", type=int, help="digits of base10/base16 numbers")
    p.add_argument("--casing", choices=("upper", "lower"))
    p.add_argument("--csv", metavar="FILE", help="CSV file: sn[,extra] per line ('-': stdin)")


def build_parser():
    common = _common()
    root = _Parser(
        prog="exoprov fleet",
        parents=[common],
        description="Vendor fleet management over the Provision API.",
    )
    root.add_argument(
        "--csv",
        dest="fmt",
        action="store_const",
        const="csv",
        default=argparse.SUPPRESS,
        help="CSV output",
    )
    fams = root.add_subparsers(dest="family", metavar="FAMILY")

    def family(name, text):
        return fams.add_parser(name, help=text, description=text).add_subparsers(
            dest="cmd", metavar="COMMAND", required=True
        )

    def leaf(sub, name, func, what, text, *, listing=False):
        p = sub.add_parser(name, help=text, description=text, parents=[common])
        p.set_defaults(func=func, what=what, listing=listing)
        if listing:
            p.add_argument(
                "--csv",
                dest="fmt",
                action="store_const",
                const="csv",
                default=argparse.SUPPRESS,
                help="CSV output",
            )
        return p

    m = family("model", "models: list, create, info, update, delete")
    leaf(m, "list", model_list, "list models", "list models", listing=True).add_argument(
        "--shared", action="store_true", help="models other vendors shared with you"
    )
    for name, func, text in (
        ("create", model_create, "create a model"),
        ("update", model_update, "change a model's template/options"),
    ):
        p = leaf(m, name, func, name + " model {model}", text)
        p.add_argument("model")
        t = p.add_mutually_exclusive_group(required=True)
        t.add_argument("--rid", help="clone template: the vendor's rid")
        t.add_argument("--code", help="clone template: a code")
        p.add_argument(
            "--option",
            action="append",
            default=[],
            choices=("noaliases", "nocomments", "nohistorical"),
        )
    leaf(m, "info", model_info, "read model {model}", "show a model", listing=True).add_argument(
        "model"
    )
    leaf(m, "delete", model_delete, "delete model {model}", "delete a model").add_argument("model")

    s = family("sn", "serial numbers: whitelist, enable, regenerate, disable, status")
    p = leaf(
        s,
        "list",
        sn_list,
        "list serial numbers of model {model}",
        "serial numbers with status and rid",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("--shared-by", help="only those enabled by this shared vendor")
    _paging(p)
    p = leaf(
        s,
        "status",
        sn_status,
        "read the status of model {model}",
        "every serial number with its status and last activation",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("--shared-by", help="only those enabled by this shared vendor")
    p.add_argument("--no-log", action="store_true", help="skip the activation logs")
    p = leaf(
        s,
        "add",
        sn_add,
        "add serial numbers to model {model}",
        "whitelist serial numbers: one or many, a --range, or a --csv file",
    )
    p.add_argument("model")
    p.add_argument("sn", nargs="*")
    p.set_defaults(many="sn")
    p.add_argument("--extra", help="extra data of a single serial number")
    _range_opts(p)
    p = leaf(
        s,
        "remove",
        sn_remove,
        "remove serial numbers from model {model}",
        "remove whitelisted serial numbers: many, a --range, or a --csv file",
    )
    p.add_argument("model")
    p.add_argument("sn", nargs="*")
    p.set_defaults(many="sn")
    _range_opts(p)
    leaf(
        s, "ranges", sn_ranges, "read the ranges of model {model}", "show ranges", listing=True
    ).add_argument("model")
    for name, func, what, text in (
        ("info", sn_info, "read {sn} of model {model}", "status, rid and extra of one sn"),
        ("log", sn_log, "read the activation log of {sn}", "the activation log of one sn"),
    ):
        p = leaf(s, name, func, what, text, listing=True)
        p.add_argument("model")
        p.add_argument("sn")
    p = leaf(s, "groups", sn_groups, "list the groups of {sn}", "groups of one sn", listing=True)
    p.add_argument("model")
    p.add_argument("sn")
    _paging(p)
    p = leaf(
        s,
        "enable",
        sn_enable,
        "enable serial numbers of model {model}",
        "create the clients (mint CIKs, open the activation window)",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("sn", nargs="+")
    p.set_defaults(many="sn")
    p.add_argument("--owner", help="rid of the clients' owner (EXOPROV_OWNER)")
    for name, func, text in (
        ("regenerate", sn_regenerate, "new CIK; the old one stops working, window reopens"),
        ("disable", sn_disable, "the CIK stops working until enabled again"),
        ("delete", sn_delete, "delete serial numbers and their clients"),
    ):
        p = leaf(s, name, func, name + " serial numbers of model {model}", text, listing=True)
        p.add_argument("model")
        p.add_argument("sn", nargs="+")
    p.set_defaults(many="sn")
    p = leaf(
        s,
        "remap",
        sn_remap,
        "remap {old} to {sn} in model {model}",
        "move the client of --from OLDSN to SN",
    )
    p.add_argument("model")
    p.add_argument("sn")
    p.add_argument("--from", dest="old", required=True, metavar="OLDSN")

    ct = family("content", "content: list, create, upload, download, info, groups, delete")
    p = leaf(
        ct, "list", content_list, "list content of model {model}", "content ids", listing=True
    )
    p.add_argument("model")
    p.add_argument("--sn", help="only what this serial number may download")
    p = leaf(
        ct,
        "create",
        content_create,
        "create content {id} in model {model}",
        "create an empty content entry",
    )
    p.add_argument("model")
    p.add_argument("id")
    p.add_argument("--meta", default="")
    p.add_argument("--protected", action="store_true")
    p = leaf(
        ct,
        "info",
        content_info,
        "read content {id} of model {model}",
        "type, size, updated, meta",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("id")
    p.add_argument("--sn", help="as this serial number sees it")
    p = leaf(
        ct,
        "groups",
        content_groups,
        "list the groups of content {id}",
        "groups of one content",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("id")
    _paging(p)
    leaf_del = leaf(
        ct,
        "delete",
        content_delete,
        "delete content {id} of model {model}",
        "delete a content and its blob",
    )
    leaf_del.add_argument("model")
    leaf_del.add_argument("id")
    p = leaf(
        ct,
        "upload",
        content_upload,
        "upload content {id} of model {model}",
        "create if needed, stream FILE, write sha256=...&version=... into the meta",
    )
    p.add_argument("model")
    p.add_argument("id")
    p.add_argument("file")
    p.add_argument("--version")
    p.add_argument("--protected", action="store_true")
    p.add_argument("--type", default="application/octet-stream", help="content type")
    _progress_opts(p)
    p = leaf(
        ct,
        "download",
        content_download,
        "download content {id} of model {model}",
        "download (resuming a .part file with Range) and check the sha256",
    )
    p.add_argument("model")
    p.add_argument("id")
    p.add_argument("-o", "--output", help="file to write (default: the id)")
    p.add_argument("--sn", help="download as this serial number may")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check")
    _progress_opts(p)

    g = family("group", "groups and their members")
    p = leaf(
        g, "list", group_list, "list groups of model {model}", "groups with meta", listing=True
    )
    p.add_argument("model")
    _paging(p)
    p = leaf(g, "create", group_create, "create group {group} in model {model}", "new group")
    p.add_argument("model")
    p.add_argument("group")
    p.add_argument("--meta", default="")
    for name, func, what, text, lst in (
        ("info", group_info, "read group {group}", "meta and member count", True),
        ("delete", group_delete, "delete group {group}", "delete a group", False),
    ):
        p = leaf(g, name, func, what, text, listing=lst)
        p.add_argument("model")
        p.add_argument("group")
    p = leaf(
        g,
        "groups",
        group_groups,
        "list the groups of group {group}",
        "groups this group belongs to",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("group")
    _paging(p)
    p = leaf(
        g,
        "members",
        group_members,
        "list the members of group {group}",
        "members, optionally of one --type / --id",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("group")
    p.add_argument("--type")
    p.add_argument("--id")
    _paging(p)
    p = leaf(
        g,
        "add",
        group_add,
        "add members to group {group}",
        "add or update members: --type T ID... or --csv FILE (type,id,expire,meta)",
    )
    p.add_argument("model")
    p.add_argument("group")
    p.add_argument("member", nargs="*")
    p.set_defaults(many="member")
    p.add_argument("--type")
    p.add_argument("--expire", default="", help="Unix seconds; empty or 0 for never")
    p.add_argument("--meta", default="")
    p.add_argument("--csv", metavar="FILE")
    p = leaf(
        g,
        "remove",
        group_remove,
        "remove members of group {group}",
        "remove members: --type T ID... or --csv FILE (type,id)",
    )
    p.add_argument("model")
    p.add_argument("group")
    p.add_argument("member", nargs="*")
    p.set_defaults(many="member")
    p.add_argument("--type")
    p.add_argument("--csv", metavar="FILE")

    sh = family("share", "share a model with other vendors")
    leaf(
        sh,
        "list",
        share_list,
        "list shares of model {model}",
        "vendors sharing a model",
        listing=True,
    ).add_argument("model")
    for name, func, what, text, lst in (
        ("add", share_add, "share model {model} with {vendor}", "share a model", False),
        ("check", share_check, "check the share of {model} with {vendor}", "is it shared?", True),
        ("remove", share_remove, "unshare model {model} from {vendor}", "end a share", False),
    ):
        p = leaf(sh, name, func, what, text, listing=lst)
        p.add_argument("model")
        p.add_argument("vendor")

    t = family("token", "vendor tokens (usable instead of the vendor CIK)")
    leaf(t, "list", token_list, "list tokens", "token ids", listing=True)
    for name, func, what, text, lst in (
        ("create", token_create, "create token {id}", "new token (printed once)", True),
        ("show", token_show, "read token {id}", "print a token", True),
        ("delete", token_delete, "delete token {id}", "delete a token", False),
    ):
        leaf(t, name, func, what, text, listing=lst).add_argument("id")

    v = family("vendor", "the vendor name registered to your CIK")
    leaf(v, "show", vendor_show, "read the vendor name", "your vendor name", listing=True)
    for name, func, text in (
        ("register", vendor_register, "register a vendor name"),
        ("unregister", vendor_unregister, "drop a vendor name"),
    ):
        leaf(v, name, func, name + " vendor name {name}", text).add_argument("name")
    return root


def _progress_opts(p):
    p.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")


# -- main -----------------------------------------------------------------------------------


def _fail(what, status, reason):
    code = "" if status is None else f"{status} "
    sys.stderr.write(f"exoprov: {what}: {code}{reason}".rstrip() + "\n")


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        a, rest = parser.parse_known_args(argv)
        # `group add M G --type sn ID ID`: ids after an option land in `rest`; they belong
        # to the command's list of ids, anything else is an error as usual.
        many = getattr(a, "many", None)
        if rest and many and not any(r.startswith("-") for r in rest):
            getattr(a, many).extend(rest)
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except UsageError as exc:
        sys.stderr.write(f"exoprov: {exc}\n")
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if not getattr(a, "func", None):
        parser.print_help(sys.stderr)
        sys.stderr.write("exoprov: fleet: a command family is needed\n")
        return 2
    for key in ("server", "cik", "token", "config", "as_vendor"):
        setattr(a, key, getattr(a, key, None))
    fmt = getattr(a, "fmt", "table")
    what = a.what.format(**vars(a))
    try:
        conf = settings(a, env)
    except UsageError as exc:
        sys.stderr.write(f"exoprov: {exc}\n")
        return 2
    if hasattr(a, "owner"):
        a.owner = conf["owner"]
    client = Client(conf["server"], cik=conf["cik"], token=conf["token"], vendor=a.as_vendor)
    try:
        emit(a.func(client, a), fmt)
    except UsageError as exc:
        sys.stderr.write(f"exoprov: {exc}\n")
        return 2
    except StepError as exc:
        if exc.done is not None and exc.done.rows:
            emit(exc.done, fmt)
        _fail(exc.what, exc.err.status, exc.err.reason)
        return 1
    except ProvisionError as exc:
        _fail(what, exc.status, exc.reason)
        return 1
    except OSError as exc:
        _fail(what, None, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return 1
    except KeyboardInterrupt:
        _fail(what, None, "interrupted")
        return 130
    finally:
        client.close()
    return 0
