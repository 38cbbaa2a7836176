"""`exoprov fleet key`: Ed25519 signing keys for signed firmware (fleet/signing.py).

No server is asked: the private key never leaves the vendor's machine."""

from ..output import Done
from ..signing import SigningError, generate
from .common import UsageError

HELP = "signing keys: generate (NAME.key stays with you, NAME.pub goes into agents' pubkeys)"


def key_generate(c, a):
    try:
        kpath, ppath, line = generate(a.name, a.dir)
    except SigningError as e:
        raise UsageError(e.args[0]) from None
    return Done(
        f"wrote {kpath} (private, 0600: keep it off the server) and {ppath}: {line}",
        name=a.name,
        key=str(kpath),
        pub=str(ppath),
        pubkey=line,
    )


def register(f):
    """Add the commands of this family to `f` (a common.Family)."""
    p = f.command(
        "generate",
        key_generate,
        "generate key {name}",
        "write NAME.key (0600) and NAME.pub (one line for the agent's pubkeys)",
    )
    p.add_argument("name", help="letters, digits, '.', '_', '-'")
    p.add_argument("--dir", default=".", help="where to write them (default: here)")
    p.set_defaults(offline=True)
