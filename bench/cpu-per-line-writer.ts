/**
 * Steady-rate line writer of bench/cpu-per-line.ts, its own process so the measuring process cannot slow it.
 *
 *   node cpu-per-line-writer.js TARGET RATE SECONDS      TARGET: a file path (appended to), or - for stdout
 *
 * Every line is its own write(2), as an application logging line by line does; lines are due at RATE per second
 * from the start (a late tick catches up), 100 bytes each with the newline, so the output size counts lines.
 */
import { openSync, writeSync } from "node:fs";

const [target, rateArg, secondsArg] = process.argv.slice(2);
if (!target) throw new Error("usage: cpu-per-line-writer TARGET RATE SECONDS");
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const fd = target === "-" ? 1 : openSync(target, "a");
const LINE_BYTES = 100;

function write(buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      // stdout may be a non-blocking pipe: a full pipe means wait for the reader, not fail
      if ((e as NodeJS.ErrnoException).code !== "EAGAIN") throw e;
    }
  }
}

let written = 0;
const t0 = process.hrtime.bigint();
const tick = (): void => {
  const el = Number(process.hrtime.bigint() - t0) / 1e9;
  const due = Math.floor(Math.min(el, seconds) * rate);
  for (; written < due; written++) {
    const head = `seq=${String(written).padStart(10, "0")} level=info msg="request served" `;
    write(Buffer.from(`${head.padEnd(LINE_BYTES - 1, "x")}\n`));
  }
  if (el >= seconds) {
    clearInterval(timer);
    if (target !== "-") process.stderr.write(`${JSON.stringify({ written })}\n`);
  }
};
// 5 ms ticks: at 20 lines/s one line per tick, at 20,000 about 100 separate writes per tick
const timer = setInterval(tick, Math.min(5, 1000 / rate));
