"""Ed25519 signature check (RFC 8032 5.1.7) with only what stock MicroPython ships.

Arbitrary-precision ints and hashlib: no C module. SHA-512 is computed here when hashlib has
none (MicroPython ships sha256 only). Points are extended coordinates (x, y, z, t) and
[s]B - [k]A is one pass of doublings over both scalars: s read in 5-bit sliding windows, each
adding one of B's odd multiples (a constant table, in flash when frozen), k in non-adjacent
form, each digit adding -A or A. Everything is counted in products and reductions, each an
allocation on a 32-bit port (about 25 k cycles on a Cortex-M0+): about 2 700 of them. CPython
uses the `cryptography` package when it is installed. Imported only when the configuration
has `pubkeys`.
"""

import hashlib

from .compat import const

# const(): folded by the compiler, so frozen they stay in flash and cost no heap or pow()
_P = const((1 << 255) - 19)
_L = const((1 << 252) + 27742317777372353535851937790883648493)
# d = -121665/121666 mod p, and a square root of -1 (2^((p-1)/4)), as numbers
_D = const(37095705934669439343138083508754565189542113879843219016388785533085940283555)
_I = const(19681161376707505956807079304988542015446066515923890162744021073123829784752)
_D2 = const(2 * _D % _P)
_M = const((1 << 64) - 1)
# SHA-512 round constants and initial value (FIPS 180-4, 4.2.3 and 5.3.5), 16 hex digits each:
# a str constant stays in flash when the agent is frozen into the firmware.
_K = (
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc"
    "3956c25bf348b53859f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118"
    "d807aa98a303024212835b0145706fbe243185be4ee4b28c550c7dc3d5ffb4e2"
    "72be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694"
    "e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5"
    "983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7beef0ee4"
    "c6e00bf33da88fc2d5a79147930aa72506ca6351e003826f142929670a0e6e70"
    "27b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df"
    "650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30"
    "d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b8"
    "19a4c116b8d2d0c81e376c085141ab532748774cdf8eeb9934b0bcb5e19b48a8"
    "391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373682e6ff3d6b2b8a3"
    "748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532b"
    "ca273eceea26619cd186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed178"
    "06f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35131c471b"
    "28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c"
    "4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817"
    "6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1"
    "510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179"
)


def _k(i):  # the i-th 64-bit word of _K
    return int(_K[16 * i : 16 * i + 16], 16)


def _w(m, i):  # word i (mod 16) of the block in m
    o = 8 * (i & 15)
    return int.from_bytes(m[o : o + 8], "big")


def _sha512(*parts):
    """SHA-512 digest of the concatenated parts (bytes-like), for a hashlib without one.
    One 128-byte block at a time (no padded copy of the message), its schedule kept in it;
    the state in 64 bytes, not 8 big ints (a 64-bit int takes 32 bytes of a 32-bit heap)."""
    m = bytearray(128)
    h = bytearray(64)
    for i in range(8):
        h[8 * i : 8 * i + 8] = _k(80 + i).to_bytes(8, "big")
    pos = n = 0
    for part in parts:
        part = memoryview(part)
        n += len(part)
        while part:
            t = min(128 - pos, len(part))
            m[pos : pos + t] = part[:t]
            part = part[t:]
            pos += t
            if pos == 128:
                _block(m, h)
                pos = 0
    m[pos] = 0x80
    pos += 1
    if pos > 112:
        m[pos:] = bytes(128 - pos)
        _block(m, h)
        pos = 0
    m[pos:112] = bytes(112 - pos)
    m[112:] = (n * 8).to_bytes(16, "big")
    _block(m, h)
    return bytes(h)


def _block(m, h):
    # one SHA-512 compression of the 128 bytes in m into the state h (8 words, 64 bytes). Each
    # 64-bit operation allocates on a 32-bit port: a rotation is a shift of y = x | x << 64,
    # and the three of a sigma share y (8 operations instead of 14); Ch and Maj in 3 and 4
    a, b, c, d, e, f, g, k = (_w(h, i) for i in range(8))
    for i in range(80):
        x = _w(m, i)
        if i > 15:
            y = _w(m, i - 15)
            z = y | y << 64
            x += _w(m, i - 7) + ((z >> 1 ^ z >> 8) & _M ^ y >> 7)
            y = _w(m, i - 2)
            z = y | y << 64
            x = (x + ((z >> 19 ^ z >> 61) & _M ^ y >> 6)) & _M
            j = 8 * (i & 15)
            m[j : j + 8] = x.to_bytes(8, "big")
        y = e | e << 64
        x += k + ((y >> 14 ^ y >> 18 ^ y >> 41) & _M) + (g ^ e & (f ^ g)) + _k(i)
        y = a | a << 64
        y = ((y >> 28 ^ y >> 34 ^ y >> 39) & _M) + (a & b | c & (a | b))
        a, b, c, d, e, f, g, k = (x + y) & _M, a, b, c, (d + x) & _M, e, f, g
    for i, x in enumerate((a, b, c, d, e, f, g, k)):
        h[8 * i : 8 * i + 8] = ((_w(h, i) + x) & _M).to_bytes(8, "big")


# Every product is of two reduced numbers and reduced at once: no int grows past 512 bits, so
# no allocation is larger than about 70 bytes (a fragmented heap has room for those). A
# remainder keeps the digits of its dividend (twice its own size); -(v) is a copy of exactly
# v's size. So what stays live is negated: all four coordinates of a point negated are the
# same point (projective), and a..d all negated leave every product below unchanged. On a
# Cortex-M0+ each product and remainder costs about 25 k cycles: the loop counts them. T is
# only computed when an addition reads it (a doubling does not), one product less each time.


def _madd(p, c, i, n, t):
    """p + the point at c[i : i + 3] (Z = 1, kept as y - x, y + x, 2dxy), or - that point when
    n: 7 products, 6 without T (add-2008-hwcd-3, a = -1; -(x, y) is (-x, y))."""
    u, v = c[i], c[i + 1]
    if n:
        u, v = v, u
    a = -((p[1] - p[0]) * u % _P)
    b = -((p[1] + p[0]) * v % _P)
    c = p[3] * c[i + 2] % _P
    if not n:
        c = -c
    d = -2 * p[2]
    a, b, c, d = b - a, d - c, d + c, b + a  # e, f, g, h: the names reused, a..d freed
    return -(a * b % _P), -(c * d % _P), -(b * c % _P), -(a * d % _P) if t else 0


def _dbl(p, t):  # dbl-2008-hwcd, a = -1: 8 products, 7 without T
    a = -(p[0] * p[0] % _P)
    b = -(p[1] * p[1] % _P)
    c = -(2 * p[2] * p[2] % _P)
    a, b = a - b, a + b  # g, h
    d = b + (p[0] + p[1]) * (p[0] + p[1]) % _P  # e
    c += a  # f
    return -(d * c % _P), -(a * b % _P), -(c * a % _P), -(d * b % _P) if t else 0


def _sq(x, n):  # x^(2^n)
    for _ in range(n):
        x = x * x % _P
    return x


def _p250(x):
    """x^(2^250 - 1) and x^11: 1/x = x^(p - 2) and x^((p - 5)/8) follow in 5 and 2 squarings.
    254 squarings and 11 products in all, where pow() squares as often but also multiplies for
    each of the exponent's 250 or so one bits. What stays live is negated (exact size, see
    below): a square drops the sign, the comments give the true values."""
    a = -(x * x % _P)  # -x^2
    b = -(_sq(a, 2) * x % _P)  # -x^9
    a = -(b * a % _P)  # -x^11
    b = -(a * a % _P * b % _P)  # x^(2^5 - 1)
    c = -(_sq(b, 5) * b % _P)  # -x^(2^10 - 1)
    b = -(_sq(c, 10) * c % _P)  # x^(2^20 - 1)
    b = -(_sq(b, 20) * b % _P)  # -x^(2^40 - 1)
    b = -(_sq(b, 10) * c % _P)  # x^(2^50 - 1)
    c = -(_sq(b, 50) * b % _P)  # -x^(2^100 - 1)
    c = -(_sq(c, 100) * c % _P)  # x^(2^200 - 1)
    return _sq(c, 50) * b % _P, -a


def _point(s):
    """32 bytes -> point, or None when they encode none (RFC 8032 5.1.3)."""
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & (1 << 255) - 1
    if y >= _P:
        return None
    u = y * y % _P
    v = (u * _D + 1) % _P
    u = (u - 1) % _P
    t = v * v % _P * v % _P  # v^3
    x = u * t % _P
    t = x * t % _P * v % _P  # u v^7
    u = v = None  # three products to make again, two numbers fewer live through the chain
    x = x * (_sq(_p250(t)[0], 2) * t % _P) % _P  # (u v^7)^(2^252 - 3), 2^252 - 3 = (p - 5)/8
    u = y * y % _P
    v = (u * _D + 1) % _P
    u = (u - 1) % _P
    vx = x * x % _P * v % _P
    if vx != u:
        if (vx + u) % _P:
            return None
        x = x * _I % _P  # times a square root of -1 (2^((p-1)/4))
    if x & 1 != sign:
        if not x:
            return None
        x = _P - x
    return x, y, 1, x * y % _P


def _bt(i):
    """The i-th of B, 3B, 5B, .., 31B as (y - x, y + x, 2dxy): read from a bytes constant
    (in flash when frozen; one 1.5 KiB object when loaded from .mpy, where a tuple of 48 big
    ints took about 5 KiB of heap)."""
    t = memoryview(
        b"\x3e\x91\x40\xd7\x05\x39\x10\x9d\xb3\xbe\x40\xd1\x05\x9f\x39\xfd\x09\x8a\x8f\x68\x34\x84\xc1\xa5"
        b"\x67\x12\xf8\x98\x92\x2f\xfd\x44\x85\x3b\x8c\xf5\xc6\x93\xbc\x2f\x19\x0e\x8c\xfb\xc6\x2d\x93\xcf"
        b"\xc2\x42\x3d\x64\x98\x48\x0b\x27\x65\xba\xd4\x33\x3a\x9d\xcf\x07\x68\xaa\x7a\x87\x05\x12\xc9\xab"
        b"\x9e\xc4\xaa\xcc\x23\xe8\xd9\x26\x8c\x59\x43\xdd\xcb\x7d\x1b\x5a\xa8\x65\x0c\x9f\x68\x7b\x11\x6f"
        b"\x65\xd2\xfc\xa4\xe8\x1f\x61\x56\x7d\xba\xc1\xe5\xfd\x53\xd3\x3b\xbd\xd6\x4b\x21\x1a\xf3\x31\x81"
        b"\x62\xda\x5b\x55\x87\x15\xb9\x2a\x30\x97\xee\x4c\xa8\xb0\x25\xaf\x8a\x4b\x86\xe8\x30\x84\x5a\x02"
        b"\x32\x67\x01\x9f\x02\x50\x1b\xc1\xf4\xf8\x80\x9a\x1b\x4e\x16\x7a\x89\xd8\xd0\x0d\x3f\x93\xae\x14"
        b"\x62\xda\x35\x1c\x22\x23\x94\x58\x4c\xdb\xf2\x8c\x45\xe5\x70\xd1\xc6\xb4\xb9\x12\xaf\x26\x28\x5a"
        b"\xba\xd6\x47\xa4\xc3\x82\x91\x7f\xb7\x29\x27\x4b\xd1\x14\x00\xd5\x87\xa0\x64\xb8\x1c\xf1\x3c\xe3"
        b"\xf3\x55\x1b\xeb\x73\x7e\x4a\x15\x33\xbb\xa5\x08\x44\xbc\x12\xa2\x02\xed\x5e\xc7\xc3\x48\x50\x8d"
        b"\x44\xec\xbf\x5a\x0c\xeb\x1b\xdd\xeb\x06\xe2\x46\xf1\xcc\x45\x29\x85\x82\x2a\x81\xf1\xdb\xbb\xbc"
        b"\xfc\xd1\xbd\xd0\x07\x08\x0e\x27\x2d\xa7\xbd\x1b\x0b\x67\x1b\xb4\x9a\xb6\x3b\x6b\x69\xbe\xaa\x43"
        b"\xb1\x21\x32\xaa\x9a\x2c\x6f\xba\xa7\x23\xba\x3b\x53\x21\xa0\x6c\x3a\x2c\x19\x92\x4f\x76\xea\x9d"
        b"\xe0\x17\x53\x2e\x5d\xdd\x6e\x1d\xbf\xa3\x4e\x94\xd0\x5c\x1a\x6b\xd2\xc0\x9d\xb3\x3a\x35\x70\x74"
        b"\x49\x2e\x54\x28\x82\x52\xb2\x71\x7e\x92\x3c\x28\x69\xea\x1b\x46\xa2\xb3\xb8\x01\xc8\x6d\x83\xf1"
        b"\x9a\xa4\x3e\x05\x47\x5f\x03\xb3\xf3\xad\x77\x58\xba\x41\x9c\x52\xa7\x90\x0f\x6a\x1c\xbb\x9f\x7a"
        b"\x64\x80\x9d\x03\x7e\x21\x6e\xf3\x9b\x41\x20\xf5\xb6\x81\xa0\x98\x44\xb0\x5e\xe7\x08\xc6\xcb\x96"
        b"\x8f\x9c\xdc\xfa\x51\x5a\xc0\x49\x2f\x63\xa8\xa6\x8a\x67\x2e\x9b\xc5\x46\xbc\x51\x6f\x9e\x50\xa6"
        b"\xb5\xf5\x86\xc6\xc9\x33\xb2\xce\x59\x7f\xdd\x8a\x33\xed\xb9\x34\x1b\xaf\x45\x90\xbf\xe8\xb4\x06"
        b"\x2f\xd2\x19\xa7\xe8\x83\xff\xe2\x16\xcf\xd4\x93\x29\xfc\xf6\xaa\x06\x8b\x00\x1b\x02\x72\xc1\x73"
        b"\x48\x43\x86\x49\x02\x5b\x5f\x31\x81\x83\x08\x77\x69\xb3\xd6\x3e\x95\xeb\x8d\x6a\x55\x75\xa0\xa3"
        b"\x7f\xc7\xd5\x29\x80\x59\xab\x18\xde\x2a\x80\x8a\x84\x00\xbf\x2f\x27\x2e\x30\x02\xcf\xfe\xd9\xe5"
        b"\x06\x34\x70\x17\x71\x84\x3e\x11\xaf\x8f\x6d\x54\xe2\xaa\x75\x42\xe9\x89\x60\xfd\xc5\x2c\x2b\xd8"
        b"\xa4\xe4\x82\x32\xa1\xb4\x1e\x03\x22\x86\x1a\xb5\x99\x11\x31\x44\x48\xf9\x3d\xb5\x22\x55\xc6\x3d"
        b"\x93\xbf\x7f\x32\x3b\x01\x6f\x50\x6b\x6f\x77\x9b\xc9\xeb\xfc\xae\x68\x59\xad\xaa\x32\xb2\x12\x9d"
        b"\xa7\x24\x60\x17\x2d\x88\x67\x02\x6d\x7f\x00\xa2\x22\xc2\x70\xbf\xdb\xde\xbc\xb5\x9a\xb3\x84\xbf"
        b"\x07\xba\x07\xfb\x12\x0e\x7a\x53\x41\xf2\x46\xc3\xee\xd7\x4f\x23\x78\xa3\x2e\x73\x19\xa1\x60\x53"
        b"\x71\xd4\x8d\xdf\xb1\xe6\x37\x24\x33\xe5\xa7\x91\xf8\x37\xef\xa2\x63\x78\x09\xaa\xfd\xa6\x7b\x49"
        b"\x0b\xcf\x8c\x46\x86\xcd\x0b\x04\xd6\x10\x99\x2a\xa4\x9b\x82\xd3\x92\x51\xb2\x07\x08\x30\x08\x75"
        b"\xbf\x5e\xd0\x18\x42\xcd\xb5\x43\xa0\xea\xcf\x13\x03\xcc\xce\x24\x6d\x24\x9c\x18\x8d\xc2\x48\x86"
        b"\xd0\xd4\xf2\xc1\xfa\xbd\xbd\x2d\x2b\xe7\x2d\xf1\x17\x29\xe2\x61\x16\xb5\xd0\x9b\x2f\x76\x9a\x5d"
        b"\xee\xde\x3f\x37\x4e\xaf\x38\xeb\x70\x42\xd6\x93\x7d\x5a\x2e\x03\x42\xd8\xe4\x0a\x21\x61\x1d\x51"
        b"\x87\xde\x20\x44\x48\x86\x13\x08\xb4\xed\x92\xb5\x16\xf0\x1c\x8a\x25\x2d\x94\x29\x27\x4e\xfa\x39"
        b"\x10\x28\x48\xe2\x6f\xfe\xa7\x71\x81\x9d\x0e\x95\xef\x76\xc6\x92\x4f\x04\xd7\xc0\xcd\x20\x46\xa5"
        b"\x48\x12\x8f\x6f\x64\x36\x9b\xaa\xe3\x55\xb8\xdd\x24\x59\x32\x6d\x54\xc8\xc8\xa5\xb8\x82\x71\x6c"
        b"\x03\x2a\x5f\xfe\x79\x14\xfd\x33\x0c\x8d\x77\x83\x18\x59\xcf\x72\xa9\xea\x9e\x55\xb6\xc4\x46\x47"
        b"\x47\x11\x74\x64\xc8\x46\x85\x34\x49\xc8\xfc\x0e\xdd\xae\x35\x7d\x32\xa3\x72\x06\x76\x9a\x93\xff"
        b"\xd6\xe6\xb5\x7d\x49\x63\x96\x21\x2b\x9a\xc6\x6d\x3c\x7b\x77\xd3\x17\xf6\x89\x6f\x27\xb2\xfa\xde"
        b"\xb5\x16\x3a\xb5\xf7\x1c\x65\x45\xb7\x9f\xfe\x34\xde\x51\x9a\x5c\x67\x0e\xf1\x79\xcf\xf1\x10\xf5"
        b"\x5b\x51\x58\xe6\xa1\xda\xdd\xff\x77\x22\x14\x10\x17\xa7\xc3\x09\xbb\x23\x82\x60\x3c\x50\x04\x48"
        b"\x75\xd1\x36\x3a\xd2\x21\x68\x3b\x32\x9e\x9b\xe9\xa7\x0a\xb4\xbb\x47\x8a\x83\x20\xe4\x5c\x9e\x5d"
        b"\x5e\x4c\xde\x58\x88\x09\x1e\x77\xc7\x7f\xa3\x2c\xd0\x9e\x24\xc4\xab\xac\x15\xa6\xe3\xa0\x59\xa0"
        b"\x23\x0e\x6e\xc9\xd7\x6e\xa9\x88\x6d\x69\x50\x16\xa5\x98\x33\x55\xdf\x1e\x45\x78\xd2\xf5\x12\x9a"
        b"\xcb\x9c\x89\x85\x79\x5d\xda\x3a\x08\x95\xa5\x9f\x2d\x4a\x7f\x47\x11\xa6\xf5\x8f\xd6\xd1\x5e\x5a"
        b"\x59\x73\x52\x58\xc5\xe0\xe5\xba\x7e\x9d\xdb\xca\x19\x5c\x2e\x39\xe9\xab\x1c\xda\x1e\x3c\x65\x28"
        b"\x44\xdc\xef\x5f\x13\x60\x9b\x01\x83\x0e\x15\xfe\x2a\x12\x95\x11\xd8\x35\x4b\x7e\x25\x9a\x20\xcf"
        b"\x20\x1e\x71\x1e\x29\xf8\x87\x73\xf0\x92\xbf\xd8\x97\xb8\xac\x44\x83\x4b\x13\x5e\x14\x68\x60\x1e"
        b"\x16\x4c\x30\x24\x4f\xe6\xf5\xc4\xd7\x3e\x1a\xfc\xa8\x88\x6e\x50\x92\x2f\xad\xe6\xfd\x49\x0c\x15"
        b"\x68\xa8\xdc\x9c\x3c\x86\x49\xb8\xd0\x4a\x71\xb8\xdb\x44\x3f\xc8\x8d\x16\x36\x0c\x56\xe3\x3e\xfe"
        b"\xc1\xfb\x05\x1e\x79\xd7\xa6\x78\x38\x11\x47\x09\x95\xf2\x7b\x8e\x51\xa6\x75\x4f\x39\xef\x6f\x5d"
        b"\xad\x08\xa7\x25\xc4\x79\xaf\x10\x22\x99\xb9\x5b\x07\x5a\x2b\x6b\x76\xb9\xa0\x47\x4b\x70\xbf\x58"
        b"\xd5\x48\x17\x74\x55\xb3\x01\xa6\x90\xf5\x42\xd5\xb1\x1f\x2b\xaa\x00\x5d\xd5\x4a\xfc\x7f\x5c\x72"
        b"\xc0\x98\xd0\x1c\xf7\x2b\x80\x91\x66\x63\x5e\xed\xa4\x6c\x41\xfe\x4c\x99\x02\x49\x71\x5d\x58\xdf"
        b"\xe7\xfa\x55\xf8\x25\x46\xd5\x4c\xb2\x99\xcf\xd1\x15\x67\x42\xe4\x34\x0d\xa2\x02\x11\xd5\x52\x73"
        b"\x9f\x10\x12\x8b\x7b\x15\xd1\x23\xa3\xf3\xb1\x7c\x27\xc9\x4c\x79\x53\x50\xac\xc2\x26\xc4\xf6\x4a"
        b"\x58\x72\xf6\x32\xad\xed\x9a\xbc\x21\x10\x31\x0a\xf1\x32\xd0\x2a\x85\x8e\xcc\x6f\x7b\x35\x08\x70"
        b"\x34\x4a\x58\x82\xbb\x9f\x1b\xd0\x2b\x79\xb4\xd2\x63\x64\xab\x47\x02\x62\x53\x48\x9c\x63\x31\xb6"
        b"\x28\xd4\xd6\x69\x36\x2a\xa9\x13\x01\x3f\x77\x38\x27\x67\x88\x0b\xfb\xcc\xfb\x95\xfa\xc8\xcc\xb8"
        b"\xb6\x29\xad\xb9\xa3\xd5\x2d\x8d\x6a\x0f\xad\x51\x98\x7e\xef\x06\xe5\x7d\x57\xc0\x1c\x77\x93\xca"
        b"\x5c\xdc\x35\x50\x1e\xe4\x40\x75\x71\xe0\x02\xd8\x01\x0f\x68\x24\x6a\xf8\x2a\x8a\xdf\x6d\x29\x3c"
        b"\x41\x25\x1f\xbb\x2e\x4d\xeb\xfc\x1f\xb9\xad\x40\xc7\x10\x95\xb8\x05\xad\xa1\xd0\x7d\xa3\x71\xfc"
        b"\x7b\x71\x47\x07\x70\x2c\x89\x0a\x13\xa7\x14\xd9\xf9\x15\xad\xae\x12\xf9\x8f\x8c\xf9\x7b\x2f\xa9"
        b"\x30\xd7\x53\x9f\x17\x23\xf8\xaf\xba\x77\x0c\x49\x93\xd3\x99\x7a\xe8\xa3\xbd\x36\x24\xed\x52\x8f"
        b"\x94\x07\xe8\x57\x41\xc8\xa8\x77\xe0\x9c\x2f\x26\x63\x65\xa9\xa5\xd2\xf7\x02\x83\xd2\x62\x67\x28"
    )[96 * i : 96 * i + 96]
    f = int.from_bytes
    return f(t[:32], "little"), f(t[32:64], "little"), f(t[64:], "little")


def _verify(pub, msg, sig):
    """The pure-Python check: is sig (64 bytes) pub's (32 bytes) signature of msg?"""
    if len(pub) != 32 or len(sig) != 64 or int.from_bytes(sig[32:], "little") >= _L:
        return False
    # the hash first, A after: the SHA-512 words and A's point are never live together
    r = memoryview(sig)[:32]
    h = getattr(hashlib, "sha512", None)
    if h:
        h = h(r)
        h.update(pub)
        h.update(msg)
        h = h.digest()
    else:
        h = _sha512(r, pub, msg)
    # the scalars' bits are read from bytes: no big-int shift per bit
    k = int.from_bytes(h, "little") % _L
    h = r = None
    s = memoryview(sig)[32:]
    a = _point(pub)
    if a is None:
        return False
    a = (a[1] - a[0], a[1] + a[0], a[3] * _D2 % _P)  # A as the table's points are kept
    # [s]B - [k]A in one pass of doublings (Straus): s in sliding windows of 5 bits, each
    # adding one of B, 3B, .., 31B, a constant (in flash when frozen); k in non-adjacent form
    # (digits -1, 0, 1, never two non-zero in a row), each adding -A or A. About 42 + 84
    # additions instead of 126 + 126, so about 2 700 products instead of 4 300.
    v = k + (k >> 1)
    n = k >> 1 ^ v
    kp, kn = (v & n).to_bytes(32, "little"), (k >> 1 & n).to_bytes(32, "little")
    k = v = n = None
    q = (0, 1, 1, 0)
    j = -1  # the pending window of s: its value is added at bit j
    for i in range(253, -1, -1):
        if j < 0 and s[i >> 3] >> (i & 7) & 1:
            j = max(i - 4, 0)
            while not s[j >> 3] >> (j & 7) & 1:  # a window ends on a set bit
                j += 1
            v = 0
            for m in range(i, j - 1, -1):
                v = v << 1 | s[m >> 3] >> (m & 7) & 1
        b = j == i
        n = kn[i >> 3] >> (i & 7) & 1
        m = n or kp[i >> 3] >> (i & 7) & 1  # A is added at bit i (-A when n: it is -[k]A)
        q = _dbl(q, b or m)
        if b:
            q = _madd(q, _bt(v >> 1), 0, 0, m)
            j = -1
        if m:
            q = _madd(q, a, 0, not n, 0)
    z, x = _p250(q[2] % _P)
    z = _sq(z, 5) * x % _P  # 1/Z = Z^(p - 2), p - 2 = 2^255 - 21
    x, y = q[0] * z % _P, q[1] * z % _P
    return (y | (x & 1) << 255).to_bytes(32, "little") == bytes(sig[:32])


def verify(pub, msg, sig):
    """Is sig (64 bytes) the Ed25519 signature of msg by the public key pub (32 bytes)?"""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:  # MicroPython, or CPython without the package
        return _verify(pub, msg, sig)
    try:
        Ed25519PublicKey.from_public_bytes(bytes(pub)).verify(bytes(sig), bytes(msg))
        return True
    except (InvalidSignature, ValueError):
        return False
