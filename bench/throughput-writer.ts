/**
 * Live writer of the throughput benchmark (bench/throughput.ts), run as its own process so that the
 * measuring process cannot slow it down.
 *
 *   node throughput-writer.js DIR FILES RATE SECONDS ROTATE_SECONDS
 *
 * Appends RATE lines/s in total, spread round-robin over DIR/app<k>.log (k < FILES), each line ~100 bytes:
 * `ts=<µs CLOCK_MONOTONIC> f=<k> seq=<n> xxx…`. CLOCK_MONOTONIC (process.hrtime) is the same clock in every
 * process on the machine, so a reader can compute the delay from write to output. Every ROTATE_SECONDS the
 * files are rotated by rename (app<k>.log → app<k>.log.<r>) and a new app<k>.log is created. At the end it
 * prints {"written":[n0,n1,…],"rotations":r,"lateTicks":…} on stdout.
 */
import { closeSync, openSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";

const [dir, filesArg, rateArg, secondsArg, rotateArg] = process.argv.slice(2);
if (!dir) throw new Error("usage: throughput-writer DIR FILES RATE SECONDS ROTATE_SECONDS");
const files = Number(filesArg ?? 2);
const rate = Number(rateArg ?? 20000);
const seconds = Number(secondsArg ?? 20);
const rotateEvery = Number(rotateArg ?? 5);
const LINE_BYTES = 100; // including the newline
const PAD = "x".repeat(LINE_BYTES);

const paths = Array.from({ length: files }, (_, k) => join(dir, `app${k}.log`));
const fds = paths.map((p) => openSync(p, "a"));
const written = paths.map(() => 0);
let rotations = 0;
let lateTicks = 0;

const nowUs = () => process.hrtime.bigint() / 1000n;
const t0 = process.hrtime.bigint();
const elapsedS = () => Number(process.hrtime.bigint() - t0) / 1e9;
let total = 0;
let nextRotate = rotateEvery;

function tick(): void {
  const el = elapsedS();
  if (el >= nextRotate && el < seconds) {
    rotations++;
    for (let k = 0; k < files; k++) {
      closeSync(fds[k] as number);
      renameSync(paths[k] as string, `${paths[k]}.${rotations}`);
      fds[k] = openSync(paths[k] as string, "a");
    }
    nextRotate += rotateEvery;
  }
  const due = Math.min(Math.floor(Math.min(el, seconds) * rate), Math.round(seconds * rate)) - total;
  if (due > rate / 50) lateTicks++; // more than 20 ms behind schedule
  if (due > 0) {
    const chunks: string[][] = paths.map(() => []);
    const ts = nowUs().toString();
    for (let i = 0; i < due; i++) {
      const k = (total + i) % files;
      const head = `ts=${ts} f=${k} seq=${String(written[k]).padStart(9, "0")} `;
      (chunks[k] as string[]).push(head + PAD.slice(0, LINE_BYTES - 1 - head.length));
      written[k] = (written[k] as number) + 1;
    }
    for (let k = 0; k < files; k++) {
      const c = chunks[k] as string[];
      if (c.length > 0) writeSync(fds[k] as number, `${c.join("\n")}\n`);
    }
    total += due;
  }
  if (el >= seconds) {
    for (const fd of fds) closeSync(fd);
    process.stdout.write(`${JSON.stringify({ written, rotations, lateTicks })}\n`);
    return;
  }
  setTimeout(tick, 1);
}
tick();
