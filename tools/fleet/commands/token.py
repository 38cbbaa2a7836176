"""`exoprov fleet token`: vendor tokens (usable instead of the vendor CIK)."""

from ..output import Done, Table

HELP = "vendor tokens (usable instead of the vendor CIK)"


def token_list(c, a):
    return Table(["id"], [[t] for t in c.token_list()])


def token_create(c, a):
    return Table(["id", "token"], [[a.id, c.token_create(a.id)]])


def token_show(c, a):
    return Table(["id", "token"], [[a.id, c.token_get(a.id)]])


def token_delete(c, a):
    c.token_delete(a.id)
    return Done(f"deleted token {a.id}", id=a.id)


def register(f):
    """Add the commands of this family to `f` (a common.Family)."""
    f.command("list", token_list, "list tokens", "token ids", listing=True)
    for name, func, what, text, lst in (
        ("create", token_create, "create token {id}", "new token (printed once)", True),
        ("show", token_show, "read token {id}", "print a token", True),
        ("delete", token_delete, "delete token {id}", "delete a token", False),
    ):
        f.command(name, func, what, text, listing=lst).add_argument("id")
