// The emulated Pico: rp2040js (npm) running a MicroPython firmware instruction by instruction.
//
//   node runner.mjs --bootrom ROM --flash IMAGE [--firmware firmware.bin|.uf2]
//                   [--ppp HOST:PORT] [--cut-op N [--torn]] [--cut-cycles N] [--max-seconds S]
//                   [--stamp] [--quiet-ops]
//
// UART0 (the REPL) is stdin/stdout, raw bytes. UART1 (the PPP modem) is a TCP connection to
// HOST:PORT, where the host-side peer (ppp.py) listens. IMAGE is the 2 MiB flash kept
// between runs: --firmware writes the firmware into it as flashing a UF2 would, and every
// erase and program the firmware makes is written through to it at once, so the process can
// die at any moment (a power cut) and the next run boots from what the flash held.
//
// Status lines go to stderr, each starting "rp2emu: ": "op N erase|program ADDR LEN CYCLES"
// for every flash operation, "reset" (watchdog reboot: exit 3), "cut ..." (exit 77), and
// "exit cycles=C sim_s=S wall_s=W mhz=M busy_mhz=B" at the end (B: while executing, not
// waiting for the host); with --stamp also "line CYCLES SIM_US
// TEXT" for every console line (when it ended).
//
// rp2040js gaps worked around here, without changing the emulator:
// - flash erase and program do nothing in it: the boot ROM's flash routines (found through
//   its function table) become breakpoints handled here (erase to 0xff, program by AND as
//   NOR flash does); the XIP mode switches and the cache flush become plain returns.
// - the UART raises its transmit interrupt again right after the firmware clears it (the
//   UART REPL then never leaves its handler): here the transmit FIFO drains at once and
//   never passes through its trigger level, so the interrupt is not raised (as on a PL011).
// - the receive-timeout interrupt is never raised (network.PPP waits on UART.IRQ_RXIDLE), and
//   the receive interrupt comes at every byte, so the firmware empties the FIFO and nothing
//   is left for a timeout: here the receive interrupt follows the FIFO's trigger level
//   (UARTIFLS) and the timeout is raised when bytes below it wait on an idle line.
// - its Simulator lets simulated time jump ahead while the core sleeps; the device would
//   then give up on the host before the host answers: here simulated time never passes the
//   wall clock while the core waits.
import fs from 'node:fs';
import net from 'node:net';
import { RP2040 } from 'rp2040js';

const argv = process.argv.slice(2);
const opt = {};
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (!a.startsWith('--')) throw new Error(`bad argument ${a}`);
  const key = a.slice(2);
  if (key === 'torn' || key === 'quiet-ops' || key === 'stamp') opt[key] = true;
  else opt[key] = argv[++i];
}
const say = (line) => process.stderr.write(`rp2emu: ${line}\n`);

const FLASH_SIZE = 2 * 1024 * 1024;
const CYCLE_NS = 8; // 125 MHz, the Pico's clk_sys
const BKPT_ERASE = 0xe0;
const BKPT_PROGRAM = 0xe1;

function loadBootrom(path) {
  const raw = fs.readFileSync(path);
  if (raw.length === 16384) return new Uint32Array(raw.buffer, raw.byteOffset, 4096).slice();
  // the rp2040js repository's demo/bootrom.ts: an array of 32-bit words
  const text = raw.toString('utf8');
  const words = text.slice(text.indexOf('[')).match(/0x[0-9a-fA-F]+/g) || [];
  if (words.length !== 4096) throw new Error(`${path}: not a 16 KiB RP2040 boot ROM`);
  return Uint32Array.from(words, (w) => parseInt(w, 16) >>> 0);
}

function firmwareBytes(path) {
  const raw = fs.readFileSync(path);
  if (!path.endsWith('.uf2')) return [[0, raw]];
  const out = [];
  for (let off = 0; off + 512 <= raw.length; off += 512) {
    const b = raw.subarray(off, off + 512);
    if (b.readUInt32LE(0) !== 0x0a324655 || b.readUInt32LE(4) !== 0x9e5d5157) continue;
    const addr = b.readUInt32LE(12);
    const len = b.readUInt32LE(16);
    out.push([addr - 0x10000000, b.subarray(32, 32 + len)]);
  }
  return out;
}

// -- flash: the image file, written through -----------------------------------------------
let image = Buffer.alloc(FLASH_SIZE, 0xff);
if (fs.existsSync(opt.flash)) {
  const old = fs.readFileSync(opt.flash);
  old.copy(image, 0, 0, Math.min(old.length, FLASH_SIZE));
}
if (opt.firmware) {
  for (const [off, data] of firmwareBytes(opt.firmware)) data.copy(image, off);
}
fs.writeFileSync(opt.flash, image);
const flashFd = fs.openSync(opt.flash, 'r+');

const mcu = new RP2040();
mcu.loadBootrom(loadBootrom(opt.bootrom)); // resets, which fills the flash with 0xff
mcu.flash.set(image, 0);
mcu.logger = { debug() {}, info() {}, warn() {}, error: (c, m) => say(`emulator error ${c}: ${m}`) };

// Boot ROM function table: a halfword pointer at 0x14 to (code, address) halfword pairs.
const rom = new DataView(mcu.bootrom.buffer);
const romFuncs = {};
for (let p = rom.getUint16(0x14, true); ; p += 4) {
  const code = rom.getUint16(p, true);
  if (!code) break;
  romFuncs[String.fromCharCode(code & 0xff, code >> 8)] = rom.getUint16(p + 2, true) & ~1;
}
const BX_LR = 0x4770;
for (const name of ['IF', 'EX', 'FC', 'CX']) rom.setUint16(romFuncs[name], BX_LR, true);
rom.setUint16(romFuncs.RE, 0xbe00 | BKPT_ERASE, true);
rom.setUint16(romFuncs.RP, 0xbe00 | BKPT_PROGRAM, true);

const cpu = mcu.core;
let ops = 0;
let stopped = false;
const t0 = process.hrtime.bigint();
const wallNs = () => Number(process.hrtime.bigint() - t0);

function finish(code, why) {
  if (stopped) return;
  stopped = true;
  const wall = wallNs() / 1e9;
  const cycles = cpu.cycles;
  if (why) say(why);
  say(`exit cycles=${cycles} sim_s=${(mcu.clock.nanos / 1e9).toFixed(3)} ` +
      `wall_s=${wall.toFixed(3)} mhz=${(cycles / wall / 1e6).toFixed(1)} ` +
      `busy_mhz=${(cycles / (busyNs || 1) * 1e3).toFixed(1)}`);
  fs.fsyncSync(flashFd);
  fs.closeSync(flashFd);
  process.exitCode = code;
  // stdout may still hold console bytes: exit once they are written
  process.stdout.write('', () => process.exit(code));
}

function flashWrite(off, len) {
  fs.writeSync(flashFd, mcu.flash, off, len, off);
}

function flashOp(kind, addr, len, apply) {
  ops += 1;
  if (!opt['quiet-ops']) say(`op ${ops} ${kind} ${addr} ${len} ${cpu.cycles}`);
  if (opt['cut-op'] && ops === Number(opt['cut-op'])) {
    if (opt.torn) {
      apply(Math.floor(len / 2)); // the power went halfway through
    }
    finish(77, `cut before op ${ops}${opt.torn ? ' (torn: half of it done)' : ''}`);
    return false;
  }
  apply(len);
  return true;
}

mcu.onBreak = (code) => {
  const r = cpu.registers;
  if (code === BKPT_ERASE) {
    // flash_range_erase(addr, count, block_size, block_cmd)
    const addr = r[0] >>> 0;
    const count = r[1] >>> 0;
    flashOp('erase', addr, count, (n) => {
      mcu.flash.fill(0xff, addr, addr + n);
      flashWrite(addr, n);
    });
  } else if (code === BKPT_PROGRAM) {
    // flash_range_program(addr, data, count)
    const addr = r[0] >>> 0;
    const src = r[1] >>> 0;
    const count = r[2] >>> 0;
    flashOp('program', addr, count, (n) => {
      for (let i = 0; i < n; i++) mcu.flash[addr + i] &= mcu.readUint8(src + i);
      flashWrite(addr, n);
    });
  } else {
    finish(70, `breakpoint ${code} at ${(cpu.PC - 2).toString(16)}: the firmware crashed`);
    return;
  }
  cpu.PC = cpu.LR & ~1; // return from the ROM routine
};

mcu.findPeripheral(0x40058000).onWatchdogTrigger = () => finish(3, 'reset');

// -- UARTs -----------------------------------------------------------------------------
const RX = 1 << 4;
const RT = 1 << 6;
const FEN = 1 << 4;
const UARTIFLS = 0x34;
const RX_LEVELS = [4, 8, 16, 24, 28]; // UARTIFLS.RXIFLSEL: 1/8 .. 7/8 of the 32-byte FIFO
function patchUart(u) {
  u.ifls = 0x12; // reset value: both trigger levels at 1/2
  u.checkInterrupts = function () {
    this.rp2040.setInterrupt(this.irq, !!(this.interruptStatus & this.interruptMask));
  };
  // the receive interrupt is raised at the FIFO's trigger level (every byte without FIFO);
  // what stays below it is the receive timeout's to report, as on the PL011
  u.rxLevel = function () {
    return this.lineCtrlRegister & FEN ? RX_LEVELS[(this.ifls >> 3) & 7] || 16 : 1;
  };
  u.rxUpdate = function () {
    if (this.rxFIFO.itemCount >= this.rxLevel()) this.interruptStatus |= RX;
    else this.interruptStatus &= ~RX;
    if (this.rxFIFO.empty) this.interruptStatus &= ~RT;
    this.checkInterrupts();
  };
  u.feedByte = function (value) {
    this.rxFIFO.push(value);
    this.rxUpdate();
  };
  const read = u.readUint32.bind(u);
  u.readUint32 = function (offset) {
    if (offset === UARTIFLS) return this.ifls;
    const v = read(offset);
    if (offset === 0) this.rxUpdate();
    return v;
  };
  const write = u.writeUint32.bind(u);
  u.writeUint32 = function (offset, value) {
    if (offset === UARTIFLS) {
      this.ifls = value & 0x3f;
      this.rxUpdate();
      return;
    }
    write(offset, value);
    if (offset === 0 && !(this.lineCtrlRegister & FEN)) {
      this.interruptStatus |= 1 << 5; // no FIFO: the holding register is empty again
      this.checkInterrupts();
    }
  };
  u.pending = [];
  u.idleSince = 0;
}
for (const u of mcu.uart) patchUart(u);

// RT after 32 bit times of silence at the UART's baud rate (115200 unless set)
function serviceRx(u) {
  let fed = false;
  while (u.pending.length && !u.rxFIFO.full) {
    u.feedByte(u.pending.shift());
    fed = true;
  }
  if (fed) u.idleSince = mcu.clock.nanos;
  else if (!u.rxFIFO.empty && !(u.interruptStatus & RT)) {
    const baud = u.baudRate || 115200;
    if (mcu.clock.nanos - u.idleSince > (32 * 1e9) / baud) {
      u.interruptStatus |= RT;
      u.checkInterrupts();
    }
  }
}

const console0 = mcu.uart[0];
let outBuf = [];
let line = [];
console0.onByte = (b) => {
  outBuf.push(b);
  if (!opt.stamp) return;
  if (b === 10) {
    // the cycle count and simulated time at which each console line ends
    const text = Buffer.from(line).toString('latin1').replace(/\r/g, '');
    say(`line ${cpu.cycles} ${Math.round(mcu.clock.nanos / 1000)} ${text}`);
    line = [];
  } else if (line.length < 300) line.push(b);
};
process.stdin.on('data', (chunk) => {
  for (const b of chunk) console0.pending.push(b);
});
process.stdin.on('end', () => {});

const modem = mcu.uart[1];
let modemOut = [];
let sock = null;
modem.onByte = (b) => modemOut.push(b);
if (opt.ppp) {
  const [host, port] = opt.ppp.split(':');
  sock = net.connect(Number(port), host);
  sock.setNoDelay(true);
  sock.on('data', (chunk) => {
    for (const b of chunk) modem.pending.push(b);
  });
  sock.on('error', (e) => say(`ppp link: ${e.message}`));
}

// -- the run loop -------------------------------------------------------------------------
const cutCycles = opt['cut-cycles'] ? Number(opt['cut-cycles']) : 0;
const maxNs = opt['max-seconds'] ? Number(opt['max-seconds']) * 1e9 : 0;
cpu.PC = 0x10000000; // boot stage 2 at the start of flash, as the boot ROM would run it

function flushOut() {
  if (outBuf.length) {
    process.stdout.write(Buffer.from(outBuf));
    outBuf = [];
  }
  if (modemOut.length && sock) {
    sock.write(Buffer.from(modemOut));
    modemOut = [];
  }
}

let busyNs = 0; // wall time spent executing instructions (not waiting for the host)
function slice() {
  if (stopped) return;
  const sliceStart = wallNs();
  const sliceEnd = sliceStart + 20e6;
  try {
    runSlice(sliceEnd);
  } finally {
    busyNs += wallNs() - sliceStart;
  }
}

function runSlice(sliceEnd) {
  const { clock } = mcu;
  for (;;) {
    for (let i = 0; i < 4000 && !stopped; i++) {
      if (cpu.waiting) {
        const wall = wallNs();
        const next = clock.nanosToNextAlarm;
        if (next > 0 && clock.nanos + next <= wall) {
          clock.tick(next);
        } else {
          // asleep until an alarm that lies in the future or until I/O: let the host run
          if (clock.nanos < wall) clock.tick(next > 0 ? Math.min(next, wall - clock.nanos) : wall - clock.nanos);
          serviceRx(console0);
          serviceRx(modem);
          if (!cpu.waiting) continue;
          flushOut();
          setTimeout(slice, 1);
          return;
        }
      } else {
        clock.tick(cpu.executeInstruction() * CYCLE_NS);
      }
    }
    if (stopped) return;
    serviceRx(console0);
    serviceRx(modem);
    if (cutCycles && cpu.cycles >= cutCycles) {
      finish(77, `cut at cycle ${cpu.cycles}`);
      return;
    }
    if (maxNs && clock.nanos > maxNs) {
      finish(4, 'max-seconds of simulated time reached');
      return;
    }
    if (wallNs() > sliceEnd) break;
  }
  flushOut();
  setImmediate(slice);
}

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => finish(0, `stopped by ${sig}`));
say(`boot flash=${opt.flash} ops-cut=${opt['cut-op'] || '-'}`);
slice();
