"""exoprov: the `exoprov` command line (cli) and what it runs.

server/ (Provision API server, dashboard), fleet/ (client library and `exoprov fleet`, one
module per command family in fleet/commands/), build, deploy, monitor, demo; in the installed
package also agent/ and boards/ (exoprov.agent, exoprov.boards). The repository's harness/
(faults, power cuts, fuzzing, load, bench) is not installed.
"""
