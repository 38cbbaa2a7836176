"""`exoprov fleet`: the vendor's command line over `exoprov.fleet.client`.

Every error ends in one line `exoprov: <what failed>: <status> <reason>` on stderr, exit 1
(2 for usage and configuration errors). Credentials are read from flags, the environment or a
0600 config file, and never printed.

The commands live in `commands/`, one module per family (model, sn, content, group, share,
token, vendor, key); this module holds what they share: the root parser and its common options,
credentials and settings, and how a result or an error reaches the terminal.
"""

import argparse
import json
import os
import stat
import sys

from .client import DEFAULT_SERVER, Client
from .commands import FAMILIES
from .commands.common import Family, StepError, UsageError
from .errors import ProvisionError
from .output import emit

CONFIG_DEFAULT = "~/.config/exoprov/fleet.json"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog.removeprefix('exoprov ')}: {message}")


# -- configuration --------------------------------------------------------------------------


def load_config(path):
    """The config file as a dict; refused unless only its owner can read it (0600)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(st.st_mode)
        raise UsageError(
            f"config file {path} is mode {mode:04o}; it holds credentials: chmod 600 it"
        )
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"config file {path} is not readable JSON ({type(exc).__name__})")
    if not isinstance(cfg, dict):
        raise UsageError(f"config file {path} must hold a JSON object")
    return cfg


def settings(a, env=None):
    """server, cik, token, owner, ca_file from flags, then environment, then the config
    file."""
    env = os.environ if env is None else env
    path = a.config or env.get("EXOPROV_CONFIG")
    cfg = {}
    home = env.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, CONFIG_DEFAULT[2:])
    if path:
        cfg = load_config(path)
    elif os.path.exists(default):
        cfg = load_config(default)

    def pick(flag, var, key, default=None):
        return flag or env.get(var) or cfg.get(key) or default

    out = {
        "server": pick(a.server, "EXOPROV_SERVER", "server", DEFAULT_SERVER),
        "cik": pick(a.cik, "EXOPROV_CIK", "cik"),
        "token": pick(a.token, "EXOPROV_TOKEN", "token"),
        "owner": pick(getattr(a, "owner", None), "EXOPROV_OWNER", "owner"),
        "ca_file": pick(getattr(a, "ca_file", None), "EXOPROV_CA_FILE", "ca_file"),
    }
    if not out["cik"] and not out["token"]:
        raise UsageError(
            "no credentials: give --cik or --token, set EXOPROV_CIK or "
            f"EXOPROV_TOKEN, or put them in {CONFIG_DEFAULT} (mode 0600)"
        )
    return out


# -- parser ---------------------------------------------------------------------------------


def _common():
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    g = p.add_argument_group("connection and output")
    g.add_argument("--server", default=s, help=f"server URL (EXOPROV_SERVER; {DEFAULT_SERVER})")
    g.add_argument("--cik", default=s, help="vendor CIK (EXOPROV_CIK)")
    g.add_argument("--token", default=s, help="vendor token (EXOPROV_TOKEN)")
    g.add_argument("--config", default=s, help=f"config file, mode 0600 ({CONFIG_DEFAULT})")
    g.add_argument(
        "--ca-file",
        default=s,
        help="CA certificates (PEM) to check an https server against (EXOPROV_CA_FILE; "
        "default: the system's CA store)",
    )
    g.add_argument(
        "--vendor",
        dest="as_vendor",
        default=s,
        help="act on this vendor's shared model (X-Exosite-Vendor)",
    )
    g.add_argument(
        "--json", dest="fmt", action="store_const", const="json", default=s, help="JSON output"
    )
    return p


def build_parser():
    common = _common()
    root = _Parser(
        prog="exoprov fleet",
        parents=[common],
        description="Vendor fleet management over the Provision API.",
    )
    root.add_argument(
        "--csv",
        dest="fmt",
        action="store_const",
        const="csv",
        default=argparse.SUPPRESS,
        help="CSV output",
    )
    fams = root.add_subparsers(dest="family", metavar="FAMILY")
    for name, module in FAMILIES.items():
        sub = fams.add_parser(name, help=module.HELP, description=module.HELP).add_subparsers(
            dest="cmd", metavar="COMMAND", required=True
        )
        module.register(Family(sub, common))
    return root


# -- main -----------------------------------------------------------------------------------


def _fail(what, status, reason):
    code = "" if status is None else f"{status} "
    sys.stderr.write(f"exoprov: {what}: {code}{reason}".rstrip() + "\n")


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        a, rest = parser.parse_known_args(argv)
        # `group add M G --type sn ID ID`: ids after an option land in `rest`; they belong
        # to the command's list of ids, anything else is an error as usual.
        many = getattr(a, "many", None)
        if rest and many and not any(r.startswith("-") for r in rest):
            getattr(a, many).extend(rest)
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except UsageError as exc:
        sys.stderr.write(f"exoprov: {exc}\n")
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if not getattr(a, "func", None):
        parser.print_help(sys.stderr)
        sys.stderr.write("exoprov: fleet: a command family is needed\n")
        return 2
    for key in ("server", "cik", "token", "config", "as_vendor", "ca_file"):
        setattr(a, key, getattr(a, key, None))
    fmt = getattr(a, "fmt", "table")
    what = a.what.format(**vars(a))
    if getattr(a, "offline", False):  # `key generate`: no server, no credentials
        try:
            emit(a.func(None, a), fmt)
        except UsageError as exc:
            sys.stderr.write(f"exoprov: {exc}\n")
            return 2
        except OSError as exc:
            _fail(what, None, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
            return 1
        return 0
    try:
        conf = settings(a, env)
    except UsageError as exc:
        sys.stderr.write(f"exoprov: {exc}\n")
        return 2
    if hasattr(a, "owner"):
        a.owner = conf["owner"]
    client = Client(
        conf["server"],
        cik=conf["cik"],
        token=conf["token"],
        vendor=a.as_vendor,
        ca_file=conf["ca_file"],
    )
    try:
        emit(a.func(client, a), fmt)
    except UsageError as exc:
        sys.stderr.write(f"exoprov: {exc}\n")
        return 2
    except StepError as exc:
        if exc.done is not None and exc.done.rows:
            emit(exc.done, fmt)
        _fail(exc.what, exc.err.status, exc.err.reason)
        return 1
    except ProvisionError as exc:
        _fail(what, exc.status, exc.reason)
        return 1
    except OSError as exc:
        _fail(what, None, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return 1
    except KeyboardInterrupt:
        _fail(what, None, "interrupted")
        return 130
    finally:
        client.close()
    return 0
