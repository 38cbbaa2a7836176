"""Single byte ranges (RFC 9110 section 14) and If-Range, as GET /provision/download takes them.

`Range: bytes=X-Y`, `bytes=X-`, `bytes=-N`, 0-based and inclusive. A header that is not one
well-formed single byte range is ignored (the whole content is sent, as RFC 9110 allows);
a well-formed one that misses the content is unsatisfiable (416).
"""

import functools
import re
from email.utils import formatdate, parsedate_to_datetime

_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


class Unsatisfiable(Exception):
    pass


def parse(header, total):
    """(first, last) to send, None for the whole content, or raise Unsatisfiable."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or total == 0:
            raise Unsatisfiable()
        return max(0, total - suffix), total - 1
    first = int(first)
    if last and int(last) < first:
        return None  # syntactically invalid: ignored
    if first >= total:
        raise Unsatisfiable()
    last = total - 1 if not last else min(int(last), total - 1)
    return first, last


@functools.lru_cache(maxsize=256)
def http_date(ts):
    return formatdate(ts, usegmt=True)


def if_range_matches(header, etag, updated):
    """True when the If-Range validator still names the current content."""
    if header is None:
        return True
    header = header.strip()
    if header.startswith('"') or header.startswith("W/"):
        return header == etag  # strong comparison: a weak tag never matches
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    if when is None:
        return False
    try:
        return int(when.timestamp()) == int(updated)
    except (OverflowError, OSError, ValueError):
        return False
