"""What every family of `exoprov fleet` commands shares: the errors that set the exit status,
`Family.command` (one subcommand with the common options), input files and paging."""

import argparse
import csv
import io
import sys

from ..client import PAGE_MAX
from ..errors import ProvisionError

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


def step(what, fn, *args, done=None, **kw):
    """fn(*args, **kw); a ProvisionError becomes a StepError naming `what` and `done`."""
    try:
        return fn(*args, **kw)
    except ProvisionError as err:
        raise StepError(what, err, done)


class Family:
    """One family's subparsers (`exoprov fleet <family> ...`); `common` holds the connection
    and output options every command takes."""

    def __init__(self, sub, common):
        self._sub = sub
        self._common = common

    def command(self, name, func, what, text, *, listing=False):
        """Add command `name` running `func(client, args)`; `what` (formatted with the args)
        names it in error lines; a listing also takes --csv."""
        p = self._sub.add_parser(name, help=text, description=text, parents=[self._common])
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


def paging(p):
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="one page of 5..1000 (else all)")


def all_pages(fetch):
    """Every row of a paged listing: fetch(offset) until a page is not full."""
    out, off = [], 0
    while True:
        rows = fetch(off)
        out += rows
        if len(rows) < PAGE_MAX:
            return out
        off += len(rows)


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
