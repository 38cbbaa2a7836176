"""`exoprov fleet sn`: serial numbers (whitelist, enable, regenerate, disable, status)."""

import datetime

from ..output import Done, Table
from .common import UsageError, batches, paging, read_csv, step

RANGE_FORMATS = ("base10", "base16", "mac:48", "mac-48", "mac.48")

HELP = "serial numbers: whitelist, enable, regenerate, disable, status"


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
            step(
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
            step(
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
            step(
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
            step(
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
        out = step(what, fn, a.model, sn, *extra, done=Table(["sn", "result"], rows))
        rows.append([sn, out if out is not None else verb + "d"])
    return rows


def sn_enable(c, a):
    if not a.owner:
        raise UsageError("sn enable needs --owner RID (or EXOPROV_OWNER): the client's owner")
    rows = []
    for sn in a.sn:
        rid = step(
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
    # What the devices told the server (exoprov extension; a server without it: blanks).
    told = step("read the fleet status", c.sn_statuses, a.model, a.shared_by) or {}
    rows = []
    for e in c.sn_all(a.model, a.shared_by, status=True):
        when = event = ""
        if not a.no_log:
            log = step(f"read the activation log of {e.sn}", c.sn_log, a.model, e.sn)
            if log:
                last = max(log, key=lambda x: x.timestamp if isinstance(x.timestamp, int) else 0)
                when, event = _when(last.timestamp), last.entry
        d = told.get(e.sn) or {}
        seen = _when(d["last_seen"]) if d.get("last_seen") is not None else ""
        rows.append(
            [e.sn, e.status or "-", e.rid, when, event]
            + [d.get("version"), seen, d.get("state"), d.get("error")]
        )
    columns = ["sn", "status", "rid", "last_activation", "result"]
    return Table(columns + ["version", "last_seen", "state", "error"], rows)


def _when(ts):
    if not isinstance(ts, int):
        return str(ts)
    t = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


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


def register(f):
    """Add the commands of this family to `f` (a common.Family)."""
    p = f.command(
        "list",
        sn_list,
        "list serial numbers of model {model}",
        "serial numbers with status and rid",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("--shared-by", help="only those enabled by this shared vendor")
    paging(p)
    p = f.command(
        "status",
        sn_status,
        "read the status of model {model}",
        "every serial number with its status, last activation, and what its device last "
        "told: version, last seen, state, last error",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("--shared-by", help="only those enabled by this shared vendor")
    p.add_argument("--no-log", action="store_true", help="skip the activation logs")
    p = f.command(
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
    p = f.command(
        "remove",
        sn_remove,
        "remove serial numbers from model {model}",
        "remove whitelisted serial numbers: many, a --range, or a --csv file",
    )
    p.add_argument("model")
    p.add_argument("sn", nargs="*")
    p.set_defaults(many="sn")
    _range_opts(p)
    f.command(
        "ranges", sn_ranges, "read the ranges of model {model}", "show ranges", listing=True
    ).add_argument("model")
    for name, func, what, text in (
        ("info", sn_info, "read {sn} of model {model}", "status, rid and extra of one sn"),
        ("log", sn_log, "read the activation log of {sn}", "the activation log of one sn"),
    ):
        p = f.command(name, func, what, text, listing=True)
        p.add_argument("model")
        p.add_argument("sn")
    p = f.command("groups", sn_groups, "list the groups of {sn}", "groups of one sn", listing=True)
    p.add_argument("model")
    p.add_argument("sn")
    paging(p)
    p = f.command(
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
        p = f.command(name, func, name + " serial numbers of model {model}", text, listing=True)
        p.add_argument("model")
        p.add_argument("sn", nargs="+")
    p.set_defaults(many="sn")
    p = f.command(
        "remap",
        sn_remap,
        "remap {old} to {sn} in model {model}",
        "move the client of --from OLDSN to SN",
    )
    p.add_argument("model")
    p.add_argument("sn")
    p.add_argument("--from", dest="old", required=True, metavar="OLDSN")


def _range_opts(p):
    p.add_argument("--range", help="FIRST-LAST in the format's notation")
    p.add_argument("--format", choices=RANGE_FORMATS, default="base10")
    p.add_argument("--length", type=int, help="digits of base10/base16 numbers")
    p.add_argument("--casing", choices=("upper", "lower"))
    p.add_argument("--csv", metavar="FILE", help="CSV file: sn[,extra] per line ('-': stdin)")
