"""`exoprov fleet content`: list, create, upload, download, info, groups, delete."""

import os
import sys

from ..client import PAGE_MAX, format_meta, parse_meta, sha256_file
from ..errors import NotFound
from ..output import Done, Progress, Table
from .common import UsageError, all_pages, paging, step

HELP = "content: list, create, upload, download, info, groups, delete"


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


def _signer(a):
    """(name, private key) of --sign, checked before anything reaches the server."""
    if not a.sign:
        return None
    from ..signing import SigningError, load

    try:
        return load(a.sign)
    except SigningError as e:
        raise UsageError(e.args[0]) from None


def content_upload(c, a, progress_out=None):
    signer = _signer(a)
    size = os.path.getsize(a.file)
    digest = sha256_file(a.file)
    signed = {"rollback": "1"} if a.rollback else {}
    if signer:
        from ..signing import SigningError, sign

        try:
            signed = sign(*signer, a.model, a.id, a.version, size, digest, a.rollback)
        except SigningError as e:
            raise UsageError(e.args[0]) from None
    try:
        info = c.content_info(a.model, a.id)
    except NotFound:
        info = None
    meta = parse_meta(info.meta) if info else {}
    for k in ("sha256", "version", "sig", "key", "rollback"):  # they describe the old file
        meta.pop(k, None)
    new = {"sha256": digest, **({"version": a.version} if a.version else {}), **signed, **meta}
    protected = bool(a.protected or (info and info.protected))
    held = a.hold or (info is not None and _held(c, a))
    hold = (f"hold content {a.id} for a rollout", c.rollout_action, a.model, a.id, "hold")
    if held and info is None:  # before the id exists: no device ever lists it
        step(*hold)
    if info is None:
        step(
            f"create content {a.id} in model {a.model}",
            c.content_create,
            a.model,
            a.id,
            format_meta(new),
            protected,
        )
    elif parse_meta(info.meta) != new or protected != info.protected:
        _recreate(c, a, format_meta(new), protected)
    if held and info is not None:  # before a byte is there (a replaced id is held anew)
        step(*hold)
    bar = Progress(f"upload {a.id}", _show_progress(a), progress_out)
    with open(a.file, "rb") as f:
        step(
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
    extra += f", signed with {signed['key']}" if signer else ""
    extra += ", rollback allowed" if a.rollback else ""
    extra += ", held for a rollout" if held else ""
    return Done(
        f"uploaded {a.file} to content {a.id} of model {a.model} ({size} bytes"
        f"{extra}, sha256 {digest})",
        model=a.model,
        id=a.id,
        size=size,
        sha256=digest,
        version=a.version or "",
        key=signed.get("key", ""),
        held=bool(held),
    )


def _held(c, a):
    """Is the content held for a rollout (kept so when a new upload replaces it)? Under a
    rollout already: a new upload would change what its waves were offered, refused."""
    try:
        state = c.rollout_status(a.model, a.id)["state"]
    except NotFound:
        return False
    if state != "held":
        raise UsageError(f"content {a.id} is under a rollout ({state}): upload a new content id")
    return True


def _recreate(c, a, meta, protected):
    """No procedure changes a content's meta: create it again, keeping its group memberships."""
    groups = all_pages(lambda off: c.content_groups(a.model, a.id, off, PAGE_MAX))
    members = []
    for g in groups:
        for m in c.group_members(a.model, g, type="content", member=a.id):
            members.append((g, m))
    step(f"replace content {a.id} of model {a.model}", c.content_delete, a.model, a.id)
    step(
        f"create content {a.id} in model {a.model}",
        c.content_create,
        a.model,
        a.id,
        meta,
        protected,
    )
    for g, m in members:
        step(
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


def register(f):
    """Add the commands of this family to `f` (a common.Family)."""
    p = f.command(
        "list", content_list, "list content of model {model}", "content ids", listing=True
    )
    p.add_argument("model")
    p.add_argument("--sn", help="only what this serial number may download")
    p = f.command(
        "create",
        content_create,
        "create content {id} in model {model}",
        "create an empty content entry",
    )
    p.add_argument("model")
    p.add_argument("id")
    p.add_argument("--meta", default="")
    p.add_argument("--protected", action="store_true")
    p = f.command(
        "info",
        content_info,
        "read content {id} of model {model}",
        "type, size, updated, meta",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("id")
    p.add_argument("--sn", help="as this serial number sees it")
    p = f.command(
        "groups",
        content_groups,
        "list the groups of content {id}",
        "groups of one content",
        listing=True,
    )
    p.add_argument("model")
    p.add_argument("id")
    paging(p)
    p = f.command(
        "delete",
        content_delete,
        "delete content {id} of model {model}",
        "delete a content and its blob",
    )
    p.add_argument("model")
    p.add_argument("id")
    p = f.command(
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
    p.add_argument(
        "--sign",
        metavar="KEYFILE",
        help="sign model, id, version, size and sha256 with this key (`key generate`): "
        "sig=...&key=... in the meta, for agents with pubkeys",
    )
    p.add_argument(
        "--hold",
        action="store_true",
        help="offer it to no device until a rollout of it starts (`rollout start`)",
    )
    p.add_argument(
        "--rollback",
        action="store_true",
        help="rollback=1 in the meta (signed with --sign): agents may install it over a "
        "newer version",
    )
    _progress_opts(p)
    p = f.command(
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


def _progress_opts(p):
    p.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
