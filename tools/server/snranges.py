"""Serial-number ranges: `base10`, `base16`, `mac:48`, `mac-48`, `mac.48`.

A range is `{"format", "length", "casing", "first", "last"}` (as POST
/provision/manage/model/<model>/ takes them in a JSON body). `length` is the zero-padded
width of base10/base16 numbers (absent: no padding, no leading zeros); `casing` fixes the
case of hex letters (absent: either case).
MAC formats are 12 hex digits: `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff`, `aabb.ccdd.eeff`.
"""

import re

from .util import ApiError

FORMATS = ("base10", "base16", "mac:48", "mac-48", "mac.48")
MAC_MAX = (1 << 48) - 1
LENGTH_MAX = 40
_MAC = {
    "mac:48": re.compile(r"([0-9A-Fa-f]{2}):" * 5 + r"([0-9A-Fa-f]{2})"),
    "mac-48": re.compile(r"([0-9A-Fa-f]{2})-" * 5 + r"([0-9A-Fa-f]{2})"),
    "mac.48": re.compile(r"([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})\.([0-9A-Fa-f]{4})"),
}


def _number(spec, key):
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApiError(400, f"range {key} must be a non-negative integer")
    return value


def normalise(spec):
    """A validated, canonical copy of one range object; 400 if it is not one."""
    if not isinstance(spec, dict):
        raise ApiError(400, "range must be an object")
    unknown = set(spec) - {"format", "length", "casing", "first", "last"}
    if unknown:
        raise ApiError(400, "unknown range field")
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise ApiError(400, "range format must be one of " + ", ".join(FORMATS))
    out = {"format": fmt, "first": _number(spec, "first"), "last": _number(spec, "last")}
    if out["first"] > out["last"]:
        raise ApiError(400, "range first is after last")
    if spec.get("casing") is not None:
        if fmt == "base10" or spec["casing"] not in ("upper", "lower"):
            raise ApiError(400, "range casing must be upper or lower (hex formats only)")
        out["casing"] = spec["casing"]
    if fmt.startswith("mac"):
        if spec.get("length") is not None:
            raise ApiError(400, "range length does not apply to mac formats")
        if out["last"] > MAC_MAX:
            raise ApiError(400, "range exceeds 48 bits")
        return out
    if spec.get("length") is not None:
        length = _number(spec, "length")
        if not 1 <= length <= LENGTH_MAX:
            raise ApiError(400, f"range length must be 1..{LENGTH_MAX}")
        base = 10 if fmt == "base10" else 16
        if out["last"] >= base**length:
            raise ApiError(400, "range last does not fit in length digits")
        out["length"] = length
    return out


def parse_ranges(body):
    """The list of range objects of a `{"ranges": [...]}` document."""
    if not isinstance(body, dict) or not isinstance(body.get("ranges"), list):
        raise ApiError(400, 'expected {"ranges": [...]}')
    if not body["ranges"] or len(body["ranges"]) > 1000:
        raise ApiError(400, "expected 1..1000 ranges")
    return [normalise(spec) for spec in body["ranges"]]


def _casing_ok(digits, casing):
    if casing == "upper":
        return digits == digits.upper()
    if casing == "lower":
        return digits == digits.lower()
    return True


def value_of(spec, sn):
    """The number `sn` stands for in the range's format, or None if it is not written so."""
    fmt = spec["format"]
    casing = spec.get("casing")
    if fmt in _MAC:
        m = _MAC[fmt].fullmatch(sn)
        if m is None:
            return None
        digits = "".join(m.groups())
        return int(digits, 16) if _casing_ok(digits, casing) else None
    if fmt == "base10":
        if not re.fullmatch(r"[0-9]+", sn):
            return None
    elif not re.fullmatch(r"[0-9A-Fa-f]+", sn) or not _casing_ok(sn, casing):
        return None
    length = spec.get("length")
    if length is not None:
        if len(sn) != length:
            return None
    elif len(sn) > 1 and sn[0] == "0":
        return None  # unpadded numbers have no leading zeros
    if len(sn) > LENGTH_MAX:
        return None
    return int(sn, 10 if fmt == "base10" else 16)


def contains(spec, sn):
    value = value_of(spec, sn)
    return value is not None and spec["first"] <= value <= spec["last"]


def any_contains(specs, sn):
    return any(contains(spec, sn) for spec in specs)
