"""The Pico W application: run the agent on /config.json.

Deployed as /lib/app.mpy (the factory application) and carried as app.mpy in every bundle;
main.py (boards/rp2_boot.py) imports `app` from the current bundle and calls main().
"""

CONFIG = "/config.json"


def main():
    from agent.main import main as run

    path = CONFIG
    try:
        from os import getenv  # the unix port (tests) names the configuration

        path = getenv("EXOPROV_CONFIG") or path
    except ImportError:
        pass
    return run([path])
