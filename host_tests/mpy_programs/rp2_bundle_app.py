"""app.py of every test bundle of host_tests/test_board_rp2.py, and of its factory app.

boards/rp2_boot.py imports `app` from the bundle's directory and calls main(). What this one
does is named by the `tag` file beside it, "NAME MODE":

    ok            confirms its bundle (as the agent does once it works), then prints
                  "app NAME running"
    no-confirm    prints "app NAME running, not confirming", returns 1
    crash-later   as ok, then raises RuntimeError("later")
    broken        does not import: ImportError("bundle NAME is broken")
    plain         prints "app NAME running" (the factory application of the board tests)
    agent         prints "bundle NAME starting", then runs the agent (boards/rp2_app.py)
    agent-broken  prints "bundle NAME starting", then does not import
"""

import os


def _tag():
    with open(__file__.rsplit("/", 1)[0] + "/tag") as f:
        return f.read().split()


NAME, MODE = _tag()
if MODE == "broken":
    raise ImportError("bundle %s is broken" % NAME)
if MODE.startswith("agent"):
    print("bundle %s starting" % NAME)
    if MODE == "agent-broken":
        import no_such_module  # noqa: F401


def main():
    if MODE.startswith("agent"):
        from boards.rp2_app import main as run

        return run()
    if MODE == "no-confirm":
        print("app %s running, not confirming" % NAME)
        return 1
    if MODE == "plain":
        print("app %s running" % NAME)
        return 0
    from boards.rp2 import Board

    b = Board({"state_dir": os.getenv("EXOPROV_ROOT")})
    try:
        b.slot_confirm()  # like the agent: keep this bundle once it works
    except OSError:
        pass  # an older bundle started after a fallback: nothing to confirm
    print("app %s running" % NAME)
    if MODE == "crash-later":
        raise RuntimeError("later")
    return 0
