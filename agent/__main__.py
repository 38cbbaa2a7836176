# `python -m agent CONFIG.json` and `micropython -m agent CONFIG.json`
import sys

from agent.main import main

sys.exit(main(sys.argv[1:]))
