"""Typed errors of the vendor client: one family, each carrying the status and the reason.

The message is built from the method, the path and the server's short reason only: never a
header, so a CIK or a vendor token cannot end up in a traceback or a log line.
"""

_REASON_MAX = 200


class ProvisionError(Exception):
    """A procedure failed. `status` is the HTTP status (None when nothing was answered)."""

    def __init__(self, status, reason, method="", path=""):
        self.status = status
        self.reason = _clean(reason)
        self.method = method
        self.path = path
        super().__init__(str(self))

    def __str__(self):
        head = f"{self.method} {self.path}: " if self.method else ""
        code = "" if self.status is None else f"{self.status} "
        return f"{head}{code}{self.reason}".rstrip()


class BadRequest(ProvisionError):
    """400: malformed parameters, or an invalid vendor/model(/sn) combination."""


class Unauthorized(ProvisionError):
    """401: missing, unknown, disabled or regenerated CIK or token."""


class Forbidden(ProvisionError):
    """403: known credentials reaching something that is not theirs."""


class NotFound(ProvisionError):
    """404: no such model, serial number, content, group, token or share."""


class Conflict(ProvisionError):
    """409: duplicate, or a serial number not in a state that allows the procedure."""


class PayloadTooLarge(ProvisionError):
    """413: the body is over the server's cap."""


class RangeNotSatisfiable(ProvisionError):
    """416: the Range asked for starts past the end; `total` is the content's size."""

    total = None


class TooManyRequests(ProvisionError):
    """429: rate limited; `retry_after` is the server's Retry-After in seconds, if any."""

    retry_after = None


class ServerError(ProvisionError):
    """5xx."""


class UnexpectedResponse(ProvisionError):
    """A status the procedure does not document, or a body that does not parse."""


class ConnectionFailed(ProvisionError):
    """No answer at all: refused, reset, timed out."""


_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    416: RangeNotSatisfiable,
    429: TooManyRequests,
}


def error_for(status, reason, method, path):
    """The right subclass for `status`."""
    if status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif 500 <= status <= 599:
        cls = ServerError
    else:
        cls = UnexpectedResponse
    return cls(status, reason, method, path)


def _clean(text):
    """One short printable line."""
    text = " ".join(str(text or "").split())
    if len(text) > _REASON_MAX:
        text = text[: _REASON_MAX - 3] + "..."
    return text
