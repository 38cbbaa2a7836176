"""`exoprov fleet vendor`: the vendor name registered to your CIK, and the CIK's rotation."""

from ..output import Done, Table

HELP = "the vendor name registered to your CIK"


def vendor_show(c, a):
    return Table(["vendor"], [[c.vendor_name()]])


def vendor_register(c, a):
    c.vendor_register(a.name)
    return Done(f"registered vendor name {a.name}", vendor=a.name)


def vendor_unregister(c, a):
    c.vendor_unregister(a.name)
    return Done(f"unregistered vendor name {a.name}", vendor=a.name)


def vendor_rotate_cik(c, a):
    return Table(["cik"], [[c.vendor_rotate_cik()]])


def register(f):
    """Add the commands of this family to `f` (a common.Family)."""
    f.command("show", vendor_show, "read the vendor name", "your vendor name", listing=True)
    for name, func, text in (
        ("register", vendor_register, "register a vendor name"),
        ("unregister", vendor_unregister, "drop a vendor name"),
    ):
        f.command(name, func, name + " vendor name {name}", text).add_argument("name")
    f.command(
        "rotate-cik",
        vendor_rotate_cik,
        "rotate the vendor CIK",
        "give your vendor a new CIK and print it (the one used here stops working, "
        "and your dashboard sessions end): keep it where the old one was",
        listing=True,
    )
