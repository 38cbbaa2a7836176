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


def _bt():
    """B, 3B, 5B, .., 31B as (y - x, y + x, 2dxy) each: a constant tuple, in flash when frozen."""
    return (
        31204614345391077396927242593886631629853981173214368409736920319215404093758,
        3533012425803781230144052908719740726127014226477800802100354883158534798213,
        50237614328228664512531835696112167678046477356841409204013502641986506238568,
        19324154932736603031152325029326367275890211278985171650228672434569381466725,
        55221577242988382633613921715755988927347615506430221002982523990194636363568,
        40779097241408971452228116607583414735230162954196233009433085899742953658505,
        9630189248235390748103966146409333440210333639383242876188677650069613696698,
        18668153700450365046820768141064729913722721519882092422277400263756282706739,
        30606639029984443449548711300126286734648431208933888345371544935567354135173,
        13312953584136576304523025463821328163824699951717010248032899908581467496881,
        31711222115254622247534096269438047277815809670749515453120456498656435938239,
        55464387603073125013932436385527479500842401496857817399907801729203523072930,
        33358695950361614583925271808519256405884421684945271723330695989338484605028,
        23848771936779537706600755363852330642691035199144679981329841599443567665967,
        52357765926424945578408752779084598596693712112103136963171288052321514532635,
        11158256924779282454740543163093780811298074430862908234953982287139410690888,
        30060548511792857161490863918616842674472112613249574336675186204794201058014,
        27941507066570052986778351271715755022397500567158991111890716087464763623913,
        1087550798001203620797136749953957393762725578137024723030949917728262045587,
        15972020931028765202356936322618908365444234765594279114894468132403870203757,
        33237312664213247073394209876351444910698636488186827598268510754927446762360,
        30626176813774521173184229023175236149481611499753231178919926386272687148811,
        44273937366294891980395583359278962421509549251851624370413480066653195594400,
        36689249660344293493892821654230283378144754582372867911177117475716794987798,
        51408171409683518304651780865025436139625850103479798491060966423396010221191,
        49391058098147747613978636594473839900812592456059555685485842656671686368641,
        32239249201957584158484856294441944742176508727016662500554249399031382460500,
        15192036317167853918673956214319489785759385347889379267595946473960338886983,
        41885441549779614419925552024385709812980951884133705414479859209789352876587,
        32574146253722353089522477048638767818366610052431514593302869928748585651815,
        53878300184980849483272980662505739915797573745324834681057077111852954472821,
        38537754846067202781996915323310273201460659524141908416191099214847019286471,
        40875688246158920801567279237891990388259452495319638957601641627119304122079,
        726837233615535089460508407528570668753491308491263996893097644586473517913,
        31062445413910016682870000347735852589507849837807105845723756654171524501123,
        9520282657668828868452567692542621055651073016014686718914139846790392007555,
        54572325583525115289868636634685610482265481710122913896940182021390607362152,
        48474070577745581105879281107782076482573181928148779522298660923737438097720,
        51727097992025464307004070536619891852339061239003802321655529125784559073654,
        34752599063041161898255902705355722506600808092270551618278146766397047347392,
        54865523371083944377969896455063040545622957411630215468252087332242168191410,
        50673542938247696660598224427071102819450722241157853822220466129072972124243,
        8892832617359459606038356492246497345059441491457034443831238674470579751476,
        3137027266534709673107240768088680049917204123831972005880336589583298281217,
        27211969961622577240971078283822226441106993344197762613220049807924239236581,
        4765493230827164152409230364011560262723285612066822560301536430910427047233,
        55453955367353851267034572784081265823224417066986740771728713918942478116627,
        18275181237530745894575533144110378924057375121582372254283881120596596990952,
    )


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
            q = _madd(q, _bt(), 3 * (v >> 1), 0, m)
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
