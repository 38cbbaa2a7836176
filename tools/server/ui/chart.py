"""Horizontal bar charts as inline SVG, drawn on the server (no script, no chart library)."""

from markupsafe import Markup, escape

STAGES = {
    "runs": "runs it",
    "downloading": "downloading",
    "applied": "applied, restarting",
    "failed": "failed",
    "rolledback": "rolled back",
    "waiting": "not started",
}
_W = 640  # drawing width
_LABEL = 170  # room for the labels on the left
_ROW = 26
_BAR = 18


def bars(items, title):
    """items: [(label, count, highlighted)] -> an <svg> with one bar per item."""
    items = list(items)
    most = max([n for _l, n, _h in items] + [1])
    span = _W - _LABEL - 60
    height = _ROW * max(len(items), 1) + 8
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {_W} {height}" width="{_W}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not items:
        out.append(f'<text x="0" y="{_ROW - 8}" class="empty">no device has reported yet</text>')
    for i, (label, count, hot) in enumerate(items):
        y = 4 + i * _ROW
        width = 0 if count == 0 else max(2, round(span * count / most))
        text = str(label)
        short = text if len(text) <= 24 else text[:23] + "\u2026"
        out.append(
            f'<text x="{_LABEL - 8}" y="{y + _BAR - 4}" text-anchor="end" class="label">'
            f"{escape(short)}</text>"
        )
        css = "bar hot" if hot else "bar"
        out.append(
            f'<rect x="{_LABEL}" y="{y}" width="{width}" height="{_BAR}" class="{css}">'
            f"<title>{escape(text)}: {count}</title></rect>"
        )
        out.append(
            f'<text x="{_LABEL + width + 6}" y="{y + _BAR - 4}" class="count">{count}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))
