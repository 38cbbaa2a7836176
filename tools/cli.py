"""`exoprov`: one command line, one module per subcommand.

Each subcommand lives in its own module with a `main(argv) -> int`; it is imported only
when used, so `exoprov monitor` does not pay for the server's imports and vice versa.
"""

import importlib
import sys

# name -> (module, function, one-line help)
COMMANDS = {
    "server": ("exoprov.server.cli", "server_main", "run the Provision API server"),
    "admin": ("exoprov.server.cli", "admin_main", "server administration (vendors)"),
    "agent": ("exoprov.agent.main", "main", "run the device agent under CPython"),
    "fleet": ("exoprov.fleet", "main", "vendor fleet management"),
    "deploy": ("exoprov.deploy", "main", "copy the agent to a board with mpremote"),
    "monitor": ("exoprov.monitor", "main", "serial monitor for a board"),
    "build": ("exoprov.build", "main", "compile agent and boards to .mpy"),
    "demo": ("exoprov.demo", "main", "the end-to-end demo behind `make run`"),
}


def _usage(out):
    out.write("usage: exoprov [--version] COMMAND [ARGS...]\n\ncommands:\n")
    for name, (_mod, _fn, text) in COMMANDS.items():
        out.write(f"  {name:<9}{text}\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-V", "--version"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            sys.stdout.write(f"exoprov {version('exoprov')}\n")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from .agent import VERSION

            sys.stdout.write(f"exoprov {VERSION}\n")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        _usage(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write(f"exoprov: unknown command {name!r}\n")
        _usage(sys.stderr)
        return 2
    mod_name, fn_name, _text = COMMANDS[name]
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        if exc.name and mod_name.startswith(exc.name):
            sys.stderr.write(f"exoprov: {name}: not available in this build\n")
            return 2
        raise
    rc = getattr(mod, fn_name)(rest)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
