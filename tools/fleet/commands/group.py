"""`exoprov fleet group`: groups and their members."""

from ..client import PAGE_MAX
from ..output import Done, Table
from .common import UsageError, all_pages, batches, paging, read_csv, step

HELP = "groups and their members"


def group_list(c, a):
    if a.limit is not None or a.offset:
        rows = c.group_list(a.model, a.offset, a.limit)
    else:
        rows = all_pages(lambda off: c.group_list(a.model, off, PAGE_MAX))
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
        rows = all_pages(
            lambda off: c.group_members(a.model, a.group, a.type, a.id, off, PAGE_MAX)
        )
    return Table(["type", "id", "expire", "meta"], rows)


def group_add(c, a):
    if bool(a.csv) == bool(a.member):
        raise UsageError("group add: give --type TYPE MEMBER... or --csv FILE (one of them)")
    if a.csv:
        rows = [tuple(r) for r in read_csv(a.csv, 4) if r[1]]
        for batch in batches(rows, lambda r: sum(len(v) for v in r) + 4):
            step(f"add members to group {a.group}", c.group_add_csv, a.model, a.group, batch)
        n = len(rows)
    else:
        if not a.type:
            raise UsageError("group add: --type is needed with member ids")
        for batch in batches(a.member, lambda s: len(s) * 3 + 8):
            step(
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
            step(f"remove members of group {a.group}", c.group_remove_csv, a.model, a.group, batch)
        n = len(pairs)
    else:
        if not a.type:
            raise UsageError("group remove: --type is needed with member ids")
        for batch in batches(a.member, lambda s: len(s) * 3 + 8):
            step(
                f"remove members of group {a.group}",
                c.group_remove,
                a.model,
                a.group,
                a.type,
                batch,
            )
        n = len(a.member)
    return Done(f"removed {n} member(s) of group {a.group}", model=a.model, group=a.group, count=n)


def register(f):
    """Add the commands of this family to `f` (a common.Family)."""
    p = f.command(
        "list", group_list, "list groups of model {model}", "groups with meta", listing=True
    )
    p.add_argument("model")
    paging(p)
    p = f.command("create", group_create, "create group {group} in model {model}", "new group")
    p.add_argument("model")
    p.add_argument("group")
    p.add_argument("--meta", default="")
    for name, func, what, text, lst in (
        ("info", group_info, "read group {group}", "meta and member count", True),
        ("delete", group_delete, "delete group {group}", "delete a group", False),
    ):
        p = f.command(name, func, what, text, listing=lst)
        p.add_argument("model")
        p.add_argument("group")
    p = f.command(
        "groups",
        group_groups,
        "list the groups of group {group}",
        "groups this group belongs to",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("group")
    paging(p)
    p = f.command(
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
    paging(p)
    p = f.command(
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
    p = f.command(
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
