"""Malformed HTTP responses: each must end in the agent's protocol error.

One table for both interpreters (CPython and the MicroPython unix port import it as is).
Every entry is `(name, response)`; a response is bytes, or `(head, unit)` for an endless
stream: `head` followed by `unit` repeated forever (the agent's caps must end it).

Responses answer `GET /x` and are read to the end of the body by the runner.
"""

_OK = b"HTTP/1.1 200 OK\r\n"
_CL2 = b"Content-Length: 2\r\n"
_TE = b"Transfer-Encoding: chunked\r\n"
# fullwidth digits U+FF10.. as UTF-8: int() on the decoded str accepts them
_FW5 = b"\xef\xbc\x95"
_FW200 = b"\xef\xbc\x92\xef\xbc\x90\xef\xbc\x90"
# a TLS 1.2 record header + ServerHello start, and a TLS alert (handshake_failure)
_TLS_HELLO = b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03" + bytes(range(32)) + b"\x20"
_TLS_ALERT = b"\x15\x03\x03\x00\x02\x02\x28"


def _chunked(body):
    return _OK + _TE + b"\r\n" + body


CASES = [
    # -- status line ---------------------------------------------------------------------
    ("eof-immediately", b""),
    ("status-no-code", b"HTTP/1.1\r\n\r\n"),
    ("status-only-version-space", b"HTTP/1.1 \r\n\r\n"),
    ("status-alpha-code", b"HTTP/1.1 abc OK\r\n" + _CL2 + b"\r\nok"),
    ("status-letter-o-code", b"HTTP/1.1 2OO OK\r\n" + _CL2 + b"\r\nok"),
    ("status-two-digits", b"HTTP/1.1 20 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-four-digits", b"HTTP/1.1 2000 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-negative", b"HTTP/1.1 -200 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-plus-sign", b"HTTP/1.1 +200 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-underscore", b"HTTP/1.1 2_00 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-unicode-digits", b"HTTP/1.1 " + _FW200 + b" OK\r\n" + _CL2 + b"\r\nok"),
    ("status-nul-in-code", b"HTTP/1.1 2\x0000 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-no-version", b"200 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-wrong-protocol", b"FOO/1.1 200 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-no-space", b"HTTP/1.1200 OK\r\n" + _CL2 + b"\r\nok"),
    ("status-line-too-long", b"HTTP/1.1 200 " + b"O" * 4000 + b"\r\n" + _CL2 + b"\r\nok"),
    ("status-line-endless", (b"HTTP/1.1 200 ", b"O" * 256)),
    ("status-line-eof", b"HTTP/1.1 200 OK"),
    ("status-bare-lf", b"HTTP/1.1 200 OK\n" + _CL2 + b"\r\nok"),
    ("status-bare-cr", b"HTTP/1.1 200 OK\r" + _CL2 + b"\r\nok"),
    ("binary-garbage", b"\x00\x01\x02\x03\xff\xfe\xfd" * 20),
    ("nul-bytes-only", b"\x00" * 64),
    ("nul-endless", (b"", b"\x00" * 64)),
    ("tls-server-hello", _TLS_HELLO),
    ("tls-alert", _TLS_ALERT),
    ("interim-100-then-eof", b"HTTP/1.1 100 Continue\r\n\r\n"),
    # -- header lines --------------------------------------------------------------------
    ("header-no-colon", _OK + b"Content-Length 2\r\n\r\nok"),
    ("header-empty-name", _OK + b": x\r\n" + _CL2 + b"\r\nok"),
    ("header-line-too-long", _OK + b"X-Long: " + b"a" * 4000 + b"\r\n" + _CL2 + b"\r\nok"),
    ("header-too-many", _OK + b"".join(b"X-H%d: v\r\n" % i for i in range(64)) + b"\r\nok"),
    ("headers-endless", (_OK, b"X-Again: and again\r\n")),
    ("header-line-endless", (_OK + b"X-Endless: ", b"v" * 256)),
    ("header-nul-in-name", _OK + b"Content\x00Length: 2\r\n\r\nok"),
    ("header-nul-in-value", _OK + b"X-A: b\x00c\r\n" + _CL2 + b"\r\nok"),
    ("header-bare-lf", _OK + b"Content-Length: 2\n\nok"),
    ("header-bare-cr", _OK + b"Content-Length: 2\r\r\nok"),
    ("header-space-before-colon", _OK + b"Content-Length : 2\r\n\r\nok"),
    ("header-eof", _OK + b"Content-Len"),
    ("headers-eof-before-blank", _OK + _CL2),
    # -- Content-Length ------------------------------------------------------------------
    ("cl-negative", _OK + b"Content-Length: -1\r\n\r\nok"),
    ("cl-overflow-2p64", _OK + b"Content-Length: 18446744073709551616\r\n\r\nok"),
    ("cl-overflow-huge", _OK + b"Content-Length: " + b"9" * 40 + b"\r\n\r\nok"),
    ("cl-doubled-different", _OK + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok!"),
    ("cl-doubled-same", _OK + _CL2 + _CL2 + b"\r\nok"),
    ("cl-comma-list", _OK + b"Content-Length: 2, 2\r\n\r\nok"),
    ("cl-non-numeric", _OK + b"Content-Length: abc\r\n\r\nok"),
    ("cl-empty", _OK + b"Content-Length: \r\n\r\nok"),
    ("cl-hex", _OK + b"Content-Length: 0x2\r\n\r\nok"),
    ("cl-plus-sign", _OK + b"Content-Length: +2\r\n\r\nok"),
    ("cl-underscore", _OK + b"Content-Length: 0_2\r\n\r\nok"),
    ("cl-float", _OK + b"Content-Length: 2.0\r\n\r\nok"),
    ("cl-exponent", _OK + b"Content-Length: 2e0\r\n\r\nok"),
    ("cl-inner-space", _OK + b"Content-Length: 1 1\r\n\r\nok"),
    ("cl-unicode-digit", _OK + b"Content-Length: " + _FW5 + b"\r\n\r\nhello"),
    ("cl-nul", _OK + b"Content-Length: 2\x00\r\n\r\nok"),
    ("cl-early-eof", _OK + b"Content-Length: 100\r\n\r\nshort"),
    ("cl-early-eof-no-body", _OK + b"Content-Length: 5\r\n\r\n"),
    ("cl-over-cap", _OK + b"Content-Length: 1099511627776\r\n\r\n" + b"x" * 64),
    # -- chunked -------------------------------------------------------------------------
    ("chunk-size-garbage", _chunked(b"zz\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-empty", _chunked(b"\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-overflow", _chunked(b"FFFFFFFFFFFFFFFFFFFFFFFF\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-negative", _chunked(b"-2\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-0x", _chunked(b"0x2\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-plus", _chunked(b"+2\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-underscore", _chunked(b"0_2\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-leading-space", _chunked(b" 2\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-unicode-digit", _chunked(_FW5 + b"\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-nul", _chunked(b"2\x00\r\nok\r\n0\r\n\r\n")),
    ("chunk-size-bare-lf", _chunked(b"2\nok\r\n0\r\n\r\n")),
    ("chunk-size-line-endless", (_OK + _TE + b"\r\n", b"0" * 256)),
    ("chunk-ext-too-long", _chunked(b"2;" + b"e" * 4000 + b"\r\nok\r\n0\r\n\r\n")),
    ("chunk-data-no-crlf", _chunked(b"2\r\nokXX0\r\n\r\n")),
    ("chunk-data-longer", _chunked(b"2\r\nokay\r\n0\r\n\r\n")),
    ("chunk-data-eof", _chunked(b"10\r\nshort")),
    ("chunk-no-last-chunk", _chunked(b"2\r\nok\r\n")),
    ("chunk-endless-data", (_OK + _TE + b"\r\n", b"100\r\n" + b"d" * 256 + b"\r\n")),
    ("chunk-trailers-endless", (_OK + _TE + b"\r\n2\r\nok\r\n0\r\n", b"X-T: t\r\n")),
    ("chunked-with-content-length", _OK + _TE + _CL2 + b"\r\n2\r\nok\r\n0\r\n\r\n"),
    ("content-length-with-chunked", _OK + _CL2 + _TE + b"\r\n2\r\nok\r\n0\r\n\r\n"),
    ("te-unknown-coding", _OK + b"Transfer-Encoding: gzip\r\n\r\nok"),
    ("te-chunked-not-last", _OK + b"Transfer-Encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    ("te-garbage", _OK + b"Transfer-Encoding: xchunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
]
