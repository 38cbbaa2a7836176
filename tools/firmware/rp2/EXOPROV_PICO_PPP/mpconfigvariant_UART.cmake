# No USB device: the REPL on UART0 only. For the rp2040js emulator, where USB CDC costs
# about three times the cycles of the same work, and for boards without the USB port wired.
list(APPEND MICROPY_DEF_BOARD
    MICROPY_HW_ENABLE_USBDEV=0
    MICROPY_HW_BOARD_NAME="Raspberry Pi Pico (exoprov PPP, UART console)"
)
