"""Start the project's own server (`exoprov server`) on loopback for fuzz, load and bench.

The vendor calls those tools make to set up a model, serial numbers and content are
`exoprov.fleet.Client.setup` and `.publish`, as the tests' are.
"""

from tools.harness.launch import ROOT, ServerProcess

RealServer = ServerProcess  # the name fuzz, load and bench use
__all__ = ["ROOT", "RealServer"]
