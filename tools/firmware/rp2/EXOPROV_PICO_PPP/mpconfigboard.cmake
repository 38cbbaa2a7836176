# A Raspberry Pi Pico (RP2040, 2 MiB flash, no radio) whose network is a serial link: a
# cellular or serial modem speaking PPP on UART1 (network.PPP over machine.UART, lwIP).
# The REPL is on UART0 (GP0/GP1) as well as USB CDC.
set(PICO_BOARD "pico")
set(PICO_PLATFORM "rp2040")
# the Pico's pin names (LED, GPn) from the port's own board
set(MICROPY_BOARD_PINS ${MICROPY_PORT_DIR}/boards/RPI_PICO/pins.csv)

set(MICROPY_PY_LWIP ON)
