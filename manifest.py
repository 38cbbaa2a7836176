# ruff: noqa: F821 (metadata, options, include and package come from MicroPython's manifest tool)
# Freeze the exoprov agent and its MicroPython board modules into a firmware image.
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC BOARD_VARIANT=OTA \
#        FROZEN_MANIFEST=/path/to/exoprov/manifest.py
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=/path/to/exoprov/manifest.py
#
# or from a board manifest of your own, to freeze one board module only:
#   include("/path/to/exoprov/manifest.py", board="esp32")
#
# The port's own manifest is included first so that its frozen modules stay. On an rp2 the
# frozen agent is the factory application: bundles installed by updates (boards/rp2.py) come
# first on sys.path, and main.py (boards/rp2_boot.py) stays on the file system.
# Versions are bumped by hand, together with package.json.

metadata(description="exoprov device agent and board modules", version="0.1.0")
options.defaults(board=None)

include("$(PORT_DIR)/boards/manifest.py")

package("agent", base_path=".")
package(
    "boards",
    files=("__init__.py", "esp32.py", "rp2.py")
    if options.board is None
    else ("__init__.py", options.board + ".py"),
    base_path=".",
)
