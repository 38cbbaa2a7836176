"""Wrap the board the agent's own `main` builds (CPython and MicroPython).

The launchers call `agent.main.main` unchanged; this replaces the one function that builds
the board (`agent.config.board`, or `agent.main._board` in older layouts) with one that wraps
its result, so nothing in agent/ is edited.
"""


def wrap_board(wrap):
    """wrap(board) -> proxy; returns agent.main (call its main)."""
    import agent.main as m

    if hasattr(m, "_board"):
        build = m._board

        def built(cfg):
            return wrap(build(cfg))

        m._board = built
        return m
    import agent.config as c

    make = c.board

    def made(cfg, mod):
        return wrap(make(cfg, mod))

    c.board = made
    return m
