"""`exoprov fleet share`: share a model with other vendors."""

from ..output import Done, Table

HELP = "share a model with other vendors"


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


def register(f):
    """Add the commands of this family to `f` (a common.Family)."""
    f.command(
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
        p = f.command(name, func, what, text, listing=lst)
        p.add_argument("model")
        p.add_argument("vendor")
