"""Fault-scenario launcher: the agent, not in `once` mode, with its sleeps recorded.

Runs unchanged under CPython and the MicroPython unix port (from the repository root):

    python|micropython tools/harness/faults/faultlaunch.py CONFIG.json SLEEPS MAX

It replaces `agent.main._board` so that the board's `sleep_ms` appends the asked duration to
the SLEEPS file and sleeps only a few milliseconds (the backoff is checked, not waited for);
after MAX sleeps the process exits 9 (the agent gave no result in time). The agent's own
`main` runs as is: it ends when the update is applied (board.reset(): exit 3).
"""

import sys

sys.path.insert(0, ".")  # the repository: agent/, boards/ and this harness


class Sleeper:
    def __init__(self, board, path, most):
        self._b, self._path, self._most, self._n = board, path, most, 0

    def __getattr__(self, name):
        return getattr(self._b, name)

    def sleep_ms(self, ms):
        with open(self._path, "a") as f:
            f.write("%d\n" % ms)
        self._n += 1
        if self._n >= self._most:
            sys.exit(9)
        self._b.sleep_ms(min(ms, 5))


def main(argv):
    cfg, path, most = argv[0], argv[1], int(argv[2])
    from tools.harness.faults.hook import wrap_board

    m = wrap_board(lambda board: Sleeper(board, path, most))
    return m.main([cfg])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
