/**
 * Where an idle agent's resident memory lives (issue 13: idle sidecar 53.8 MiB against a 48 MiB target, bare
 * Node 39.4), beside bare `node -e` and bare Node loading only one of the agent's dependencies, in the same run:
 *
 *   npx tsc -p tsconfig.build.json && node scripts/bundle.mjs && npx tsc -p bench/tsconfig.json \
 *     && node bench/.work/dist/bench/idle-memory-breakdown.js [--reps 3] [--hold 3000]
 *
 * Conditions (shuffled per repetition, every one a fresh process of this Node):
 *   bare            `node -e 'setTimeout(…)'` (bench/sidecar-memory.ts's reference)
 *   esm-empty       an empty .mjs file (the ES module loader, which the agent's main.js goes through)
 *   pino            an .mjs importing pino only;  pino-logger: and writing one line through pino.destination(2)
 *   commander       an .mjs importing commander only
 *   worker-threads  an .mjs importing node:worker_threads only (pino's lib/tools.js does)
 *   agent           the image's build (dist-bundle/cli/main.js) as an idle `run` of one empty folder
 *   agent-no-opt    the same with `node --no-opt` (no TurboFan: shows what the optimizing compiler's first use at
 *                   start-up costs; not a proposal, it costs throughput)
 * Module conditions are sampled HOLD ms after spawn, the agent HOLD ms after its "tailing" log line.
 *
 * Each sample, from /proc/PID (nothing is asked of the process itself, so measuring does not change it):
 *   status   VmHWM, VmRSS and its split RssAnon / RssFile / RssShmem
 *   threads  count and names (/proc/PID/task/TID/comm)
 *   smaps    resident KiB per kind of mapping: the node binary's code (r-xp), read-only data (r--p) and data,
 *            shared libraries, [heap] (the main thread's malloc), malloc arenas of other threads (64 MiB
 *            reservations), thread stacks (8 MiB + guard page), the V8 code range (rwx), V8 heap pages (anonymous
 *            mappings V8 places at random addresses below the mmap area), other anonymous memory
 *   binary   the node binary's resident pages (/proc/PID/pagemap) attributed to ELF sections and to the symbol
 *            of `nm` covering each page: V8 C++ by namespace (compiler = TurboFan, maglev, baseline,
 *            interpreter, parsing…), V8 embedded builtins, node C++, ICU, OpenSSL, libuv; .rodata without a
 *            symbol split into text pages (> 90% printable: node's built-in JS module sources) and binary ones
 * Needs root (pagemap) and binutils' `nm`/`readelf`. Result: bench/results/idle-memory-breakdown-<stamp>.json.
 */
import { execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { stopChild } from "./app/proc.js";
import { median } from "./paired-stats.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const BUNDLE = join(ROOT, "dist-bundle/cli/main.js");
const NODE_BIN = execFileSync("readlink", ["-f", process.execPath], { encoding: "utf8" }).trim();
const PAGE = 4096;

const { values: args } = parseArgs({
  options: { reps: { type: "string", default: "3" }, hold: { type: "string", default: "3000" } },
});
const REPS = Number(args.reps);
const HOLD_MS = Number(args.hold);
const WORK = join(os.tmpdir(), `ikon-bench-idle-breakdown-${process.pid}`);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const mib = (kib: number) => round(kib / 1024, 2);

// ---- the node binary: sections and symbols (non-PIE: addresses in the file are the addresses in memory)

interface Range {
  start: number;
  end: number;
  name: string;
}
function sections(): Range[] {
  const out = execFileSync("readelf", ["-SW", NODE_BIN], { encoding: "utf8" });
  const rows: Range[] = [];
  for (const line of out.split("\n")) {
    const m = /^\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(line);
    if (!m) continue;
    const start = Number.parseInt(m[2]!, 16);
    if (start) rows.push({ start, end: start + Number.parseInt(m[4]!, 16), name: m[1]! });
  }
  return rows.sort((a, b) => a.start - b.start);
}
function symbols(): Range[] {
  const out = execFileSync("nm", ["-S", "-C", "--defined-only", NODE_BIN], {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  const rows: Range[] = [];
  for (const line of out.split("\n")) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) \S (.*)$/.exec(line);
    if (!m) continue;
    const start = Number.parseInt(m[1]!, 16);
    const size = Number.parseInt(m[2]!, 16);
    if (size > 0) rows.push({ start, end: start + size, name: m[3]! });
  }
  return rows.sort((a, b) => a.start - b.start);
}
const SECTIONS = sections();
const SYMBOLS = symbols();
const LONGEST_SYMBOL = Math.max(...SYMBOLS.map((s) => s.end - s.start));

function covering(rows: Range[], addr: number, reach: number): Range | undefined {
  let lo = 0;
  let hi = rows.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (rows[mid]!.start <= addr) lo = mid + 1;
    else hi = mid - 1;
  }
  for (let i = hi; i >= 0 && rows[i]!.start > addr - reach; i--) if (rows[i]!.end > addr) return rows[i];
  return undefined;
}

const binFd = openSync(NODE_BIN, "r");
const LOAD_OFFSETS = (() => {
  // Program headers: virtual address → file offset for the page-content check.
  const out = execFileSync("readelf", ["-lW", NODE_BIN], { encoding: "utf8" });
  return [...out.matchAll(/LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)/g)].map(
    (m) => ({
      offset: Number.parseInt(m[1]!, 16),
      vaddr: Number.parseInt(m[2]!, 16),
      size: Number.parseInt(m[3]!, 16),
    }),
  );
})();
const textPageCache = new Map<number, boolean>();
/** A page of the binary that is > 90% printable text: built-in JS sources and other string literals. */
function isTextPage(addr: number): boolean {
  const cached = textPageCache.get(addr);
  if (cached !== undefined) return cached;
  const seg = LOAD_OFFSETS.find((l) => addr >= l.vaddr && addr < l.vaddr + l.size);
  let text = false;
  if (seg) {
    const buf = Buffer.alloc(PAGE);
    const n = readSync(binFd, buf, 0, PAGE, seg.offset + (addr - seg.vaddr));
    let printable = 0;
    for (let i = 0; i < n; i++) {
      const c = buf[i]!;
      if ((c >= 0x20 && c < 0x7f) || c === 0x0a || c === 0x09) printable++;
    }
    text = n > 0 && printable / n > 0.9;
  }
  textPageCache.set(addr, text);
  return text;
}

const V8_NAMESPACES = [
  "compiler",
  "maglev",
  "baseline",
  "interpreter",
  "wasm",
  "parsing",
  "Intl",
  "trap_handler",
];
function v8Kind(name: string): string {
  const rest = name.replace(/^v8::internal::/, "");
  const ns = /^([a-z_]+)::/.exec(rest)?.[1];
  if (ns && V8_NAMESPACES.includes(ns)) return `V8 C++ ${ns}`;
  if (/^(Parser|PreParser|Scanner|ParserBase|AstValueFactory|AstNode|Ast|Scope|DeclarationScope)/.test(rest))
    return "V8 C++ parsing";
  if (/^(JSDateTimeFormat|JSNumberFormat|JSCollator|JSLocale|Intl)/.test(rest)) return "V8 C++ Intl";
  if (
    /^(Heap|MarkCompact|Scavenger|ConcurrentMarking|MinorMarkCompact|PagedSpace|NewSpace|MemoryAllocator)/.test(
      rest,
    )
  )
    return "V8 C++ heap/GC";
  if (name.startsWith("v8::internal::")) return "V8 C++ other internal";
  return "V8 C++ API";
}
function binaryKind(addr: number): { kind: string; symbol?: string } {
  const section = covering(SECTIONS, addr, 1 << 30)?.name ?? "(no section)";
  const sym = covering(SYMBOLS, addr, LONGEST_SYMBOL);
  if (!sym) {
    if (section === ".rodata")
      return { kind: isTextPage(addr) ? ".rodata text (built-in JS sources, strings)" : ".rodata binary" };
    return { kind: `${section} (no symbol)` };
  }
  const n = sym.name;
  const where = section === ".text" ? "code" : section;
  let what = "other";
  if (n.startsWith("Builtins_")) what = "V8 embedded builtins";
  else if (n.startsWith("icudt")) what = "ICU data";
  else if (n.startsWith("v8::")) what = v8Kind(n);
  else if (n.startsWith("node::")) what = "node C++";
  else if (/^icu_\d+::|^u[a-z]*_\w+_\d+$/.test(n)) what = "ICU";
  else if (/^(uv_|uv__)/.test(n)) what = "libuv";
  else if (/^(EVP_|SSL|ssl|OPENSSL|CRYPTO|BN_|ossl|X509|ASN1|EC_|RSA|tls|PEM|BIO)/.test(n)) what = "OpenSSL";
  else if (/^(ada::|simdutf|llhttp|nghttp|brotli|Brotli|deflate|inflate|cares|ares_|uvwasi)/.test(n))
    what = "other libraries (ada, simdutf, llhttp, zlib, c-ares…)";
  return { kind: `${where}: ${what}`, symbol: n };
}

/** Resident pages of the node binary's mappings, attributed. */
function binaryBreakdown(pid: number): { byKind: Record<string, number>; bySymbol: Map<string, number> } {
  const byKind: Record<string, number> = {};
  const bySymbol = new Map<string, number>();
  const fd = openSync(`/proc/${pid}/pagemap`, "r");
  try {
    for (const line of readFileSync(`/proc/${pid}/maps`, "utf8").split("\n")) {
      const p = line.split(/\s+/);
      if (p[5] !== NODE_BIN) continue;
      const [a, b] = p[0]!.split("-").map((x) => Number.parseInt(x, 16)) as [number, number];
      const pages = (b - a) / PAGE;
      const buf = Buffer.alloc(pages * 8);
      readSync(fd, buf, 0, buf.length, (a / PAGE) * 8);
      for (let k = 0; k < pages; k++) {
        if (!(buf.readBigUInt64LE(k * 8) >> 63n)) continue;
        const { kind, symbol } = binaryKind(a + k * PAGE);
        byKind[kind] = (byKind[kind] ?? 0) + PAGE / 1024;
        if (symbol) bySymbol.set(symbol, (bySymbol.get(symbol) ?? 0) + PAGE / 1024);
      }
    }
  } finally {
    closeSync(fd);
  }
  return { byKind, bySymbol };
}

// ---- smaps: resident KiB per kind of mapping

interface Mapping {
  start: number;
  end: number;
  perms: string;
  name: string;
  rss: number;
}
function mappings(pid: number): Mapping[] {
  const out: Mapping[] = [];
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      out.push({
        start: Number.parseInt(head[1]!, 16),
        end: Number.parseInt(head[2]!, 16),
        perms: head[3]!,
        name: head[4]!.trim(),
        rss: 0,
      });
    } else if (line.startsWith("Rss:")) out[out.length - 1]!.rss = Number(/(\d+)/.exec(line)![1]);
  }
  return out;
}
const ARENA = 64 * 1024 * 1024;
function smapsBreakdown(pid: number): Record<string, number> {
  const maps = mappings(pid);
  const kinds: Record<string, number> = {};
  const add = (k: string, kib: number) => {
    kinds[k] = (kinds[k] ?? 0) + kib;
  };
  // The V8 code range: one large reservation whose committed part is rwx (the first pages before it are its
  // header); everything inside [start of the rwx mapping - 64 KiB, end of the reservation) counts as code.
  const rwx = maps.find((m) => m.perms === "rwxp" && m.name === "");
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i]!;
    const size = m.end - m.start;
    const next = maps[i + 1];
    const prev = maps[i - 1];
    if (m.name === NODE_BIN) add(`node binary ${m.perms}`, m.rss);
    else if (m.name.startsWith("/")) add("shared libraries and other files", m.rss);
    else if (m.name === "[heap]") add("[heap]: main thread malloc (brk)", m.rss);
    else if (m.name === "[stack]") add("[stack]: main thread", m.rss);
    else if (m.name.startsWith("[")) add("vdso, vvar", m.rss);
    else if (m.perms === "rwxp" || (rwx && m.start >= rwx.start - 65536 && m.start < rwx.start))
      add("V8 code range (rwx)", m.rss);
    else if (
      m.perms === "rw-p" &&
      m.start % ARENA === 0 &&
      next &&
      next.perms === "---p" &&
      next.start === m.end &&
      next.end - m.start === ARENA
    )
      add("malloc arenas of other threads", m.rss);
    else if (m.perms === "rw-p" && size === 8 * 1024 * 1024 && prev?.perms === "---p" && prev.end === m.start)
      add("thread stacks (8 MiB + guard)", m.rss);
    else if (m.perms === "rw-p" && m.start < 0x7000_0000_0000 && m.start > 0x1_0000_0000)
      add("V8 heap pages (random addresses)", m.rss);
    else add("other anonymous", m.rss);
  }
  return kinds;
}

// ---- one sample

interface Sample {
  condition: string;
  rep: number;
  status: Record<string, number>;
  threads: { count: number; names: Record<string, number> };
  smapsKiB: Record<string, number>;
  binaryKiB: Record<string, number>;
  loadavg1: number;
}
function statusMiB(pid: number): Record<string, number> {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)![1]);
  return Object.fromEntries(["VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"].map((k) => [k, mib(kb(k))]));
}
function threads(pid: number): Sample["threads"] {
  const names: Record<string, number> = {};
  const tids = readdirSync(`/proc/${pid}/task`);
  for (const t of tids) {
    const n = readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim();
    names[n] = (names[n] ?? 0) + 1;
  }
  return { count: tids.length, names };
}

const require = createRequire(join(ROOT, "package.json"));
const moduleUrl = (name: string) => pathToFileURL(require.resolve(name)).href;
const KEEP_ALIVE = `setTimeout(() => {}, ${HOLD_MS + 30_000});\n`;
const SCRIPTS: Record<string, string> = {
  "esm-empty": KEEP_ALIVE,
  pino: `import pino from ${JSON.stringify(moduleUrl("pino"))};\nvoid pino;\n${KEEP_ALIVE}`,
  "pino-logger": `import pino from ${JSON.stringify(moduleUrl("pino"))};\npino({ name: "x" }, pino.destination({ fd: 2, sync: true })).info("ready");\n${KEEP_ALIVE}`,
  commander: `import { Command } from ${JSON.stringify(moduleUrl("commander"))};\nvoid Command;\n${KEEP_ALIVE}`,
  "worker-threads": `import "node:worker_threads";\n${KEEP_ALIVE}`,
};
const CONDITIONS = ["bare", ...Object.keys(SCRIPTS), "agent", "agent-no-opt"];

async function sample(
  condition: string,
  rep: number,
): Promise<{ sample: Sample; bySymbol: Map<string, number> }> {
  const dir = join(WORK, `${condition}-${rep}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "logs"), { recursive: true });
  let argv: string[];
  if (condition === "bare") argv = ["-e", KEEP_ALIVE];
  else if (condition.startsWith("agent"))
    argv = [
      ...(condition === "agent-no-opt" ? ["--no-opt"] : []),
      BUNDLE,
      ...["run", "--watch", join(dir, "logs"), "--state-dir", join(dir, "state"), "--svc", "bench"],
    ];
  else {
    const file = join(dir, `${condition}.mjs`);
    writeFileSync(file, SCRIPTS[condition]!);
    argv = [file];
  }
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "ignore", "pipe"] });
  try {
    let err = "";
    child.stderr!.setEncoding("utf8");
    const ready = new Promise<void>((res, rej) => {
      if (!condition.startsWith("agent")) res();
      child.stderr!.on("data", (d: string) => {
        err += d;
        if (err.includes('"msg":"tailing"')) res();
      });
      child.once("exit", (c) => rej(new Error(`${condition} exited (${c}): ${err.slice(-400)}`)));
    });
    await ready;
    await sleep(HOLD_MS);
    const pid = child.pid!;
    const status = statusMiB(pid);
    const t = threads(pid);
    const smapsKiB = smapsBreakdown(pid);
    const { byKind, bySymbol } = binaryBreakdown(pid);
    if (child.exitCode !== null) throw new Error(`${condition} ended early: ${err.slice(-400)}`);
    const s: Sample = {
      condition,
      rep,
      status,
      threads: t,
      smapsKiB,
      binaryKiB: byKind,
      loadavg1: round(os.loadavg()[0]!, 2),
    };
    console.log(JSON.stringify({ condition, rep, ...status, threads: t.count }));
    return { sample: s, bySymbol };
  } finally {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

function medianOf(samples: Sample[], pick: (s: Sample) => Record<string, number>): Record<string, number> {
  const keys = [...new Set(samples.flatMap((s) => Object.keys(pick(s))))];
  const rows = keys.map((k) => [k, round(median(samples.map((s) => pick(s)[k] ?? 0)), 2)] as const);
  return Object.fromEntries(rows.sort((a, b) => b[1] - a[1]));
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  const loadavgAtStart = os.loadavg().map((x) => round(x, 2));
  const samples: Sample[] = [];
  const symbolsFirstRep = new Map<string, Map<string, number>>();
  try {
    for (let rep = 1; rep <= REPS; rep++) {
      for (const c of [...CONDITIONS].sort(() => Math.random() - 0.5)) {
        const { sample: s, bySymbol } = await sample(c, rep);
        samples.push(s);
        if (rep === 1) symbolsFirstRep.set(c, bySymbol);
      }
    }
  } finally {
    rmSync(WORK, { recursive: true, force: true });
    closeSync(binFd);
  }
  const summary = Object.fromEntries(
    CONDITIONS.map((c) => {
      const xs = samples.filter((s) => s.condition === c);
      return [
        c,
        {
          statusMiB: medianOf(xs, (s) => s.status),
          threads: median(xs.map((s) => s.threads.count)),
          smapsKiB: medianOf(xs, (s) => s.smapsKiB),
          binaryKiB: medianOf(xs, (s) => s.binaryKiB),
        },
      ];
    }),
  );
  // What each condition adds over bare `node -e`, median against median.
  const over = (c: string, field: "statusMiB" | "smapsKiB" | "binaryKiB") => {
    const a = summary[c]![field] as Record<string, number>;
    const b = summary.bare![field] as Record<string, number>;
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return Object.fromEntries(
      keys
        .map((k) => [k, round((a[k] ?? 0) - (b[k] ?? 0), 2)] as const)
        .filter(([, d]) => d !== 0)
        .sort((x, y) => Math.abs(y[1]) - Math.abs(x[1])),
    );
  };
  const overBare = Object.fromEntries(
    CONDITIONS.filter((c) => c !== "bare").map((c) => [
      c,
      { statusMiB: over(c, "statusMiB"), smapsKiB: over(c, "smapsKiB"), binaryKiB: over(c, "binaryKiB") },
    ]),
  );
  // Symbols of the node binary with the most resident pages gained over bare (repetition 1 only).
  const bare = symbolsFirstRep.get("bare")!;
  const topSymbolsOverBareRep1 = Object.fromEntries(
    CONDITIONS.filter((c) => c !== "bare").map((c) => {
      const gained = [...symbolsFirstRep.get(c)!]
        .map(([n, kib]) => [n, kib - (bare.get(n) ?? 0)] as const)
        .filter(([, d]) => d > 0)
        .sort((x, y) => y[1] - x[1])
        .slice(0, 25);
      return [c, Object.fromEntries(gained.map(([n, d]) => [n.slice(0, 160), d]))];
    }),
  );
  const date = new Date().toISOString();
  let commit = "";
  try {
    commit = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  } catch {}
  const result = {
    benchmark: "idle-memory-breakdown",
    date,
    commit,
    machine: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      node: process.version,
      nodeBinary: NODE_BIN,
    },
    protocol: {
      reps: REPS,
      holdMs: HOLD_MS,
      sampled: "HOLD ms after spawn (module conditions) or after the agent's tailing line; from /proc only",
      conditions: {
        bare: "node -e",
        ...SCRIPTS,
        agent: `${BUNDLE} run --watch EMPTY_DIR`,
        "agent-no-opt": `node --no-opt ${BUNDLE} run --watch EMPTY_DIR`,
      },
    },
    loadavgAtStart,
    loadavgAtEnd: os.loadavg().map((x) => round(x, 2)),
    summary,
    overBare,
    topSymbolsOverBareRep1,
    samples,
  };
  mkdirSync(join(ROOT, "bench/results"), { recursive: true });
  const file = join(ROOT, "bench/results", `idle-memory-breakdown-${date.replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify({ overBare }, null, 2));
  console.log(file);
}

await main();
