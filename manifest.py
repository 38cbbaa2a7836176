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
# The unix port (`exoprov build --firmware unix`, which includes this file with board="unix"):
#   include("/path/to/exoprov/manifest.py", board="unix")
#
# The port's own manifest is included first so that its frozen modules stay. On the unix port
# (port="unix", implied by board="unix") only its asyncio: the variant's manifest.py wants
# micropython-lib (mip, ssl), which a build without TLS does not use. On an rp2 the
# frozen agent is the factory application: bundles installed by updates (boards/rp2.py) come
# first on sys.path, and main.py (boards/rp2_boot.py) stays on the file system.
# Versions are bumped by hand, together with package.json.

metadata(description="exoprov device agent and board modules", version="0.1.0")
options.defaults(board=None, port=None)

if (options.port or ("unix" if options.board == "unix" else None)) == "unix":
    include("$(MPY_DIR)/extmod/asyncio")
else:
    include("$(PORT_DIR)/boards/manifest.py")

package("agent", base_path=".")
package(
    "boards",
    files=("__init__.py", "esp32.py", "rp2.py")
    if options.board is None
    else ("__init__.py", options.board + ".py"),
    base_path=".",
)
