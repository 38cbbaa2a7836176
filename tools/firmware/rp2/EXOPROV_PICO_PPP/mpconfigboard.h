// Raspberry Pi Pico with a PPP modem on UART1 (boards/rp2.py, "net": "ppp").
#ifndef MICROPY_HW_BOARD_NAME
#define MICROPY_HW_BOARD_NAME                   "Raspberry Pi Pico (exoprov PPP)"
#endif
#define MICROPY_HW_FLASH_STORAGE_BYTES          (1408 * 1024)

// network.PPP on lwIP, with sockets; no Wi-Fi chip.
#define MICROPY_PY_NETWORK                      (1)
#define MICROPY_PY_NETWORK_PPP_LWIP             (1)
#define MICROPY_PY_NETWORK_HOSTNAME_DEFAULT     "exoprov-pico"
// The agent speaks plain HTTP to a server behind the modem link or HTTPS through a
// terminating proxy; webrepl is of no use on a PPP link.
#define MICROPY_PY_WEBREPL                      (0)

// The REPL on UART0 too: a board with the modem and no USB host still has a console.
#define MICROPY_HW_ENABLE_UART_REPL             (1)
