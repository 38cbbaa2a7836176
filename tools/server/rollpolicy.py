"""What a staged rollout decides, as pure functions (no I/O): which devices a wave holds, when
the next wave starts, when the rollout pauses itself. rollouts.py applies them in the store.

A device's place in a rollout is a stable hash of its serial number (salted with the content
id, so that the same devices are not the first wave of every rollout): a number in
[0, BUCKETS). Wave k % holds the devices whose number is below k * BUCKETS / 100, so a device
once in stays in as the waves grow, and the choice never depends on the order of polls.
"""

import hashlib
import re

BUCKETS = 10000  # a wave's percentage to 1/100 of a percent
FAILED = ("failed", "rolledback", "refused")  # reported states that count against a rollout
STATES = ("running", "paused", "aborted", "done")
DEFAULTS = {"min_devices": 1, "max_failures": 20.0, "success": 100.0, "soak": 0}
_DURATION = re.compile(r"(\d{1,9})([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Invalid(ValueError):
    """A rollout parameter that cannot be used (the API answers 400 with its text)."""


def bucket(cid, sn):
    """The device's stable place in the rollout of content `cid`: 0 <= n < BUCKETS."""
    digest = hashlib.sha256(f"{cid}\0{sn}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def threshold(pct):
    """Devices with bucket() below this are in a wave of `pct` percent."""
    return int(round(float(pct) * BUCKETS / 100))


def in_wave(cid, sn, pct):
    return bucket(cid, sn) < threshold(pct)


def wave_of(cid, sn, waves):
    """The index of the first wave (of the percentages `waves`) that holds the device, or
    None when none does."""
    b = bucket(cid, sn)
    for i, pct in enumerate(waves):
        if b < threshold(pct):
            return i
    return None


def parse_waves(text):
    """ "1,10,50,100" -> [1.0, 10.0, 50.0, 100.0]: increasing, each in (0, 100], the last 100
    (a rollout ends with every device offered the content)."""
    try:
        waves = [float(w) for w in str(text).split(",") if w.strip()]
    except ValueError:
        raise Invalid("waves: percentages separated by commas, e.g. 1,10,50,100") from None
    if not waves or any(not 0 < w <= 100 for w in waves):
        raise Invalid("waves: each percentage must be above 0 and at most 100")
    if any(b <= a for a, b in zip(waves, waves[1:], strict=False)):
        raise Invalid("waves: percentages must increase")
    if waves[-1] != 100:
        waves.append(100.0)
    return waves


def format_waves(waves):
    return ",".join(f"{w:g}" for w in waves)


def parse_duration(text):
    """ "0", "30s", "10m", "2h", "1d" (a bare number is seconds) -> seconds."""
    m = _DURATION.fullmatch(str(text).strip())
    if m is None:
        raise Invalid("soak: a duration such as 0, 30s, 10m or 2h")
    return int(m[1]) * _UNIT[m[2]]


def parse_pct(text, name):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise Invalid(f"{name}: a percentage") from None
    if not 0 <= value <= 100:
        raise Invalid(f"{name}: a percentage from 0 to 100")
    return value


def parse_count(text, name):
    if not str(text).isdigit() or int(text) > 10**9:
        raise Invalid(f"{name}: a whole number")
    return int(text)


def should_pause(started, failed, min_devices, max_failures):
    """The rollout stops itself: at least `min_devices` devices started on the content and
    `max_failures` % (or more) of them report failed, rolledback or refused."""
    if started <= 0 or started < min_devices:
        return False
    return failed * 100 >= max_failures * started


def should_advance(wave_size, active, success, wave_started, soak, now):
    """The next wave starts: `success` % of the current wave's devices report the new content
    active and the soak time has passed since the wave started. A device that never reports
    counts as not active: silence holds a rollout back, never pushes it on."""
    if now < wave_started + soak:
        return False
    if wave_size <= 0:  # nobody in this wave (a small fleet's 1 %): nothing to wait for
        return True
    return active * 100 >= success * wave_size


def device_state(reported, cid, taker):
    """A device's state in the rollout of `cid` from its report (dict of state, content,
    error): "active" when it runs the content, one of FAILED when it failed to, "started"
    while it works on it, else None (the report says nothing about this rollout). A device
    running the content says nothing about it but "active". A failure or a rollback counts
    from a device that took the content; a refusal (the agent refuses before downloading) when
    its error names the content (the agent's refusals begin with the content id), or without
    an error from a device that took it."""
    state = reported.get("state")
    content = reported.get("content") or ""
    runs_it = content == cid or content.startswith(cid + ":")
    if runs_it:
        return "active" if state == "active" else None
    if state == "refused":
        error = reported.get("error")
        if error is None:
            return "refused" if taker else None
        named = error.startswith(cid) and error[len(cid) : len(cid) + 1] in (":", " ")
        return "refused" if named else None
    if state in ("failed", "rolledback") and taker:
        return state
    if state in ("downloading", "applied") and taker:
        return "started"
    return None
