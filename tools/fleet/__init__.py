"""Vendor fleet tools: the client library (`client`) and `exoprov fleet` (`cli`)."""


def main(argv=None):
    """`exoprov fleet ...` -> exit status."""
    from .cli import main as _main

    return _main(argv)
