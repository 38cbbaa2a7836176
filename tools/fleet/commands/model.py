"""`exoprov fleet model`: list, create, info, update, delete models."""

from ..output import Done, Table

HELP = "models: list, create, info, update, delete"


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


def register(f):
    """Add the commands of this family to `f` (a common.Family)."""
    f.command("list", model_list, "list models", "list models", listing=True).add_argument(
        "--shared", action="store_true", help="models other vendors shared with you"
    )
    for name, func, text in (
        ("create", model_create, "create a model"),
        ("update", model_update, "change a model's template/options"),
    ):
        p = f.command(name, func, name + " model {model}", text)
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
    f.command("info", model_info, "read model {model}", "show a model", listing=True).add_argument(
        "model"
    )
    f.command("delete", model_delete, "delete model {model}", "delete a model").add_argument(
        "model"
    )
