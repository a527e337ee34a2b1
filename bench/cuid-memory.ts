/**
 * Memory cost of minting CUIDs with the uuid package (issue 13 item 5), beside its references in the same run:
 *
 *   npx tsc -p tsconfig.build.json && npx tsc -p bench/tsconfig.json && node bench/.work/dist/bench/cuid-memory.js [--reps N]
 *
 * Conditions, interleaved in a shuffled order per repetition (N, default 7; medians reported):
 *   bare           `node -e` kept alive 1.5 s (the floor)
 *   crypto-module  an ES module kept alive 1.5 s after `import { randomUUID } from "node:crypto"` + one call
 *   uuid-module    the same with `import { v4, v7 } from "uuid"` and one v4 + one v7 (the package alone)
 *   agent-before   an idle `run` sidecar (one empty watched folder, fresh state dir: it mints its CUID), built
 *                  from this tree with src/core/cuid.ts as in the last commit where it did not import uuid
 *                  (CUIDs from node:crypto)
 *   agent-uuid     the same with this build (dist/)
 * Each agent runs until 1.5 s after it logged "tailing", then gets SIGTERM. Memory: peak RSS (VmHWM) and RSS at
 * the end (VmRSS) from /proc/<pid>/status. Result: bench/results/cuid-memory-<stamp>.json.
 */
import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const HOLD_MS = 1_500;

const git = (args: string[]) => execFileSync("git", ["-C", ROOT, ...args], { encoding: "utf8" }).trim();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mib = (kb: number) => Math.round((kb / 1024) * 10) / 10;

function memoryKb(pid: number): { hwm: number; rss: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    return { hwm: Number(/VmHWM:\s+(\d+)/.exec(s)![1]), rss: Number(/VmRSS:\s+(\d+)/.exec(s)![1]) };
  } catch {
    return undefined;
  }
}

/** Builds the agent as of the last commit without uuid in src/core/cuid.ts, into a temp dir. */
function buildBefore(dir: string): string {
  const revs = git(["log", "--format=%H", "--", "src/core/cuid.ts"]).split("\n");
  const rev = revs.find((r) => !git(["show", `${r}:src/core/cuid.ts`]).includes('from "uuid"'));
  if (!rev) throw new Error("no commit without uuid in src/core/cuid.ts");
  // This tree's sources with only cuid.ts as it was: the difference is the uuid package and nothing else.
  for (const f of ["src", "tsconfig.json", "tsconfig.build.json", "package.json"]) {
    cpSync(join(ROOT, f), join(dir, f), { recursive: true });
  }
  writeFileSync(join(dir, "src/core/cuid.ts"), git(["show", `${rev}:src/core/cuid.ts`]));
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  execFileSync(join(ROOT, "node_modules/.bin/tsc"), ["-p", "tsconfig.build.json"], { cwd: dir });
  return rev;
}

/** Runs a command; samples its memory just before it is told to stop (or before it ends on its own). */
function measure(cmd: string, args: string[], readyLog?: string): Promise<{ hwm: number; rss: number }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    let last: { hwm: number; rss: number } | undefined;
    const sample = () => {
      last = memoryKb(child.pid!) ?? last;
    };
    const poll = setInterval(sample, 100);
    const stopLater = () =>
      setTimeout(() => {
        sample();
        child.kill("SIGTERM");
      }, HOLD_MS);
    if (readyLog) {
      child.stderr.on("data", (d: Buffer) => {
        const had = err.includes(`"msg":"${readyLog}"`);
        err += d.toString();
        if (!had && err.includes(`"msg":"${readyLog}"`)) stopLater();
      });
    } else child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code, signal) => {
      clearInterval(poll);
      if (!last || (code !== 0 && signal !== "SIGTERM"))
        reject(new Error(`${cmd} ${args.join(" ")}: ${code} ${err}`));
      else resolvePromise(last);
    });
  });
}

async function main(): Promise<void> {
  const repsAt = process.argv.indexOf("--reps");
  const reps = repsAt > 0 ? Number(process.argv[repsAt + 1]) : 7;
  const tmp = mkdtempSync(join(os.tmpdir(), "ikon-cuid-mem-"));
  try {
    const beforeDir = join(tmp, "before");
    mkdirSync(beforeDir);
    const beforeRev = buildBefore(beforeDir);
    const hold = `setTimeout(() => {}, ${HOLD_MS})`;
    let n = 0;
    const agent = (main: string) => () => {
      const d = join(tmp, `run-${n++}`);
      mkdirSync(join(d, "logs"), { recursive: true });
      const args = [main, "run", "--watch", join(d, "logs"), "--state-dir", join(d, "state"), "--svc", "mem"];
      return measure(process.execPath, args, "tailing");
    };
    const conditions: Record<string, () => Promise<{ hwm: number; rss: number }>> = {
      bare: () => measure(process.execPath, ["-e", `${hold}`]),
      // ESM evaluation alone costs several MiB: the module references pay it too, so only the import differs.
      "crypto-module": () =>
        measure(process.execPath, [
          "--input-type=module",
          "-e",
          `import { randomUUID } from "node:crypto"; randomUUID(); ${hold}`,
        ]),
      "uuid-module": () =>
        measure(process.execPath, [
          "--input-type=module",
          "-e",
          `import { v4, v7 } from "uuid"; v4(); v7(); ${hold}`,
        ]),
      "agent-before": agent(join(beforeDir, "dist/cli/main.js")),
      "agent-uuid": agent(join(ROOT, "dist/cli/main.js")),
    };
    const samples: Record<string, Array<{ hwm: number; rss: number }>> = {};
    const load: number[][] = [];
    for (let r = 0; r < reps; r++) {
      load.push(os.loadavg());
      const order = Object.keys(conditions).sort(() => Math.random() - 0.5);
      for (const name of order) {
        const got = await conditions[name]!();
        samples[name] = [...(samples[name] ?? []), got];
      }
    }
    const summary: Record<string, { peakMiB: number; rssMiB: number }> = {};
    for (const [name, xs] of Object.entries(samples)) {
      summary[name] = {
        peakMiB: mib(median(xs.map((x) => x.hwm))),
        rssMiB: mib(median(xs.map((x) => x.rss))),
      };
    }
    const delta = (a: string, b: string) => Math.round((summary[b]!.peakMiB - summary[a]!.peakMiB) * 10) / 10;
    const result = {
      benchmark: "cuid-memory",
      date: new Date().toISOString(),
      node: process.version,
      commit: git(["rev-parse", "--short", "HEAD"]),
      before: beforeRev.slice(0, 7),
      reps,
      holdMs: HOLD_MS,
      loadavgPerRep: load,
      samplesKb: samples,
      summary,
      peakDeltaMiB: {
        uuidModuleOverCryptoModule: delta("crypto-module", "uuid-module"),
        agentUuidOverBefore: delta("agent-before", "agent-uuid"),
      },
    };
    const out = join(ROOT, "bench/results", `cuid-memory-${result.date.replace(/[:.]/g, "-")}.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    console.log(JSON.stringify({ summary, peakDeltaMiB: result.peakDeltaMiB }, null, 2));
    console.log(out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
