"""Output of `exoprov fleet`: a plain table by default, `--json` or `--csv` for scripts."""

import csv
import json
import sys


class Table:
    """Rows under named columns; what every listing command returns."""

    def __init__(self, columns, rows):
        self.columns = list(columns)
        self.rows = [["" if v is None else v for v in row] for row in rows]


class Done:
    """The outcome of an action: one sentence for people, a dict for scripts."""

    def __init__(self, message, **fields):
        self.message = message
        self.fields = fields


def emit(result, fmt="table", out=None):
    out = out or sys.stdout
    if result is None:
        return
    if isinstance(result, Done):
        if fmt == "json":
            out.write(json.dumps({"ok": True, **result.fields}) + "\n")
        elif fmt == "csv":
            if result.fields:
                w = csv.writer(out, lineterminator="\n")
                w.writerow(result.fields.keys())
                w.writerow(result.fields.values())
        else:
            out.write(result.message + "\n")
        return
    if fmt == "json":
        objs = [dict(zip(result.columns, row, strict=False)) for row in result.rows]
        out.write(json.dumps(objs, indent=None) + "\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(result.columns)
        w.writerows(result.rows)
    else:
        out.write(format_table(result))


def format_table(table):
    """Left-aligned columns, two spaces apart, upper-case header; '(none)' when empty."""
    if not table.rows:
        return "(none)\n"
    cells = [[str(c).upper() for c in table.columns]]
    cells += [[str(v) for v in row] for row in table.rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(table.columns))]
    lines = []
    for row in cells:
        text = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False))
        lines.append(text.rstrip())
    return "\n".join(lines) + "\n"


class Progress:
    """A one-line progress bar on a terminal (stderr); silent when `enabled` is False."""

    def __init__(self, label, enabled, out=None, width=30):
        self.label = label
        self.enabled = enabled
        self.out = out or sys.stderr
        self.width = width
        self._last = -1

    def __call__(self, done, total):
        if not self.enabled:
            return
        pct = 100 if not total else min(100, done * 100 // total)
        if pct == self._last:
            return
        self._last = pct
        fill = self.width * pct // 100
        bar = "#" * fill + "-" * (self.width - fill)
        self.out.write(f"\r{self.label} [{bar}] {pct:3d}% {_size(done)}/{_size(total)}")
        if done >= total:
            self.out.write("\n")
        self.out.flush()


def _size(n):
    if n < 1024:
        return f"{n}B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f}KiB"
    return f"{n / (1024 * 1024):.1f}MiB"
