import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  countLines,
  killStartedAgents,
  readStamped,
  readStampedSoFar,
  removeDir,
  sleep,
  startCli,
  stopAgent,
  tempDir,
  until,
} from "../helpers/agent.js";
import { waitForCount } from "../helpers/progress.js";

const dirs: string[] = [];
afterEach(() => {
  killStartedAgents(); // an agent a failed test left running, by PID
  for (const d of dirs.splice(0)) removeDir(d);
});

function setup(extra: string[] = []) {
  const root = tempDir("ikon-in-");
  dirs.push(root);
  const d = { root, logs: join(root, "logs"), out: join(root, "out"), state: join(root, "state") };
  mkdirSync(d.logs);
  const args = ["run", "--watch", d.logs, "--output", `file:${d.out}`, "--state-dir", d.state, "--svc", "in"];
  return { ...d, args: [...args, "--linger", "300ms", "--poll-interval", "100ms", ...extra] };
}

/** What the agent must emit for `input`: split on \n, one trailing \r dropped, pieces of `max` bytes. */
function expectedLines(input: Buffer, max: number, withUnterminated: boolean): string[] {
  const out: string[] = [];
  const text = input.toString("latin1");
  const parts = text.split("\n");
  const last = parts.pop()!;
  const emit = (line: string) => {
    if (line.length <= max) return out.push(line);
    let i = 0;
    while (line.length - i > max) {
      out.push(line.slice(i, i + max));
      i += max;
    }
    out.push(line.slice(i));
  };
  for (const p of parts) emit(p.endsWith("\r") ? p.slice(0, -1) : p);
  if (withUnterminated && last !== "") emit(last);
  return out;
}

describe("bad input", () => {
  const MAX = 1024 * 1024;
  const corpus = Buffer.concat([
    Buffer.from("plain line\n"),
    Buffer.from([0x00, 0x01, 0x02, 0xff, 0xfe, 0x7f, 0x0d, 0x0a]), // binary, ends CRLF
    Buffer.from([0x62, 0x61, 0x64, 0x20, 0xc3, 0x28, 0x20, 0xe2, 0x82, 0x0a]), // invalid UTF-8
    Buffer.from("windows line\r\n"),
    Buffer.from("double cr\r\r\n"),
    Buffer.from("\n\n"), // empty lines
    Buffer.from('{"msg":"fake","ikontainer_CUID":"00000000-0000-0000-0000-000000000000","svc":"evil"}\n'),
    Buffer.from(
      'text then fake tag {"ikontainer_CUID":"11111111-1111-1111-1111-111111111111","svc":"evil"}\n',
    ),
    Buffer.concat([Buffer.alloc(5 * MAX, 0x61), Buffer.from("\n")]), // a 5 MiB line
    Buffer.concat([Buffer.alloc(MAX + 7, 0x62), Buffer.from("\n")]),
    Buffer.from("no final newline"),
  ]);

  it("append format is byte-transparent; long lines become tagged pieces; fake tags never win", async () => {
    const d = setup(["--metrics-port", "0", "--metrics-host", "127.0.0.1"]);
    writeFileSync(join(d.logs, "bad.log"), corpus);
    const agent = startCli(d.args);
    const { port } = await agent.waitForLog("serving /metrics, /healthz, /readyz");
    const want = expectedLines(corpus, MAX, false);
    await until(() => readStampedSoFar(d.out).length >= want.length);
    await sleep(400); // the unterminated line must NOT come out while the file is still there
    expect(readStamped(d.out).map((l) => l.text)).toEqual(want);

    const raw = readFileSync(join(d.out, "bad.log"), "latin1").split("\n");
    const cuid = JSON.parse(readFileSync(join(d.state, "cuid.json"), "utf8")).cuid as string;
    // Every line ends with the agent's own tag, even the ones that carried a fake tag already.
    for (const l of raw.slice(0, -1))
      expect(l).toMatch(new RegExp(`\\{"ikontainer_CUID":"${cuid}","svc":"in"(,.*)?\\}$`));
    const pieces = raw.filter((l) => l.includes('"ikontainer_part"'));
    expect(pieces.length).toBe(5 + 2);
    expect(pieces.filter((l) => l.includes('"ikontainer_partial":true')).length).toBe(4 + 1);

    // Rotated away: after the linger the unterminated last line is emitted.
    renameSync(join(d.logs, "bad.log"), join(d.logs, "bad.log.1"));
    await until(() => readStampedSoFar(d.out).length === want.length + 1, 10_000);
    expect(readStamped(d.out).at(-1)!.text).toBe("no final newline");
    // The counters agree with the output: 5 + 2 pieces, one unterminated line, every line read once.
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^ikontainer_long_line_pieces_total 7$/m);
    expect(metrics).toMatch(/^ikontainer_unterminated_lines_total 1$/m);
    expect(metrics).toMatch(new RegExp(`^ikontainer_lines_in_total ${want.length + 1}$`, "m"));
    expect(await stopAgent(agent)).toEqual({ code: 0, signal: null });
  });

  it("json format: invalid UTF-8 replaced and flagged, app fields kept, agent keys win", async () => {
    const d = setup(["--format", "json"]);
    writeFileSync(join(d.logs, "bad.log"), corpus);
    const agent = startCli(d.args);
    const want = expectedLines(corpus, MAX, false).length;
    const read = () =>
      readFileSync(join(d.out, "bad.log"), "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    await until(() => {
      try {
        return read().length >= want;
      } catch {
        return false;
      }
    });
    await stopAgent(agent);
    const recs = read();
    const cuid = JSON.parse(readFileSync(join(d.state, "cuid.json"), "utf8")).cuid as string;
    for (const r of recs) {
      expect(r.ikontainer_CUID).toBe(cuid);
      expect(r.svc).toBe("in");
      expect(typeof r["@timestamp"]).toBe("string");
      expect(r.source).toBe(join(d.logs, "bad.log"));
    }
    const invalid = recs.filter((r) => r.ikontainer_invalid_utf8 === true);
    expect(invalid.map((r) => r.message)).toEqual([
      "\u0000\u0001\u0002\ufffd\ufffd\u007f",
      "bad \ufffd( \ufffd",
    ]);
    const fake = recs.find((r) => r.app_ikontainer_CUID !== undefined)!;
    expect(fake).toMatchObject({
      msg: "fake",
      message: "fake",
      app_ikontainer_CUID: "00000000-0000-0000-0000-000000000000",
      app_svc: "evil",
      ikontainer_CUID: cuid,
      svc: "in",
    });
    expect(recs.filter((r) => r.ikontainer_part !== undefined).length).toBe(7);
  });
});

describe("files, folders and links", () => {
  it.each(["inotify", "chokidar"])(
    "--watcher %s: picks up files and folders created later (also removed and made again); include/exclude; symlink escapes reported, inner links read once",
    async (watcher) => {
      const d = setup(["--metrics-port", "0", "--log-level", "info", "--watcher", watcher]);
      const outside = join(d.root, "outside");
      mkdirSync(outside);
      writeFileSync(join(outside, "secret.log"), "secret\n");
      writeFileSync(join(d.logs, "a.log"), "a1\n");
      writeFileSync(join(d.logs, "a.log.1"), "rotated\n");
      writeFileSync(join(d.logs, "a.log.2.gz"), "gz\n");
      writeFileSync(join(d.logs, "notes.txt"), "txt\n");
      symlinkSync(join(outside, "secret.log"), join(d.logs, "escape.log"));
      symlinkSync(join(d.logs, "a.log"), join(d.logs, "alias.log"));
      const agent = startCli(d.args);
      await agent.waitForLog("tailing");
      mkdirSync(join(d.logs, "late", "deeper"), { recursive: true });
      writeFileSync(join(d.logs, "late", "deeper", "x.log"), "x1\nx2\n");
      writeFileSync(join(d.logs, "late", "y.log"), "y1\n");
      await until(() => readStampedSoFar(d.out).length >= 4);
      // A folder removed and made again under the same name is watched again.
      rmSync(join(d.logs, "late"), { recursive: true });
      await sleep(300); // time passing is the point: the agent sees the folder gone before it comes back
      mkdirSync(join(d.logs, "late"));
      await sleep(300); // and the new folder before a file appears in it
      writeFileSync(join(d.logs, "late", "z.log"), "z1\n");
      await until(() => readStampedSoFar(d.out).length >= 5);
      // No wait for "nothing more": the stop reads every open file to its end, so a line read twice shows below.
      await stopAgent(agent);
      const texts = readStamped(d.out)
        .map((l) => l.text)
        .sort();
      expect(texts).toEqual(["a1", "x1", "x2", "y1", "z1"]);
      expect(agent.stderr()).toContain("IKON_ERR_SYMLINK_ESCAPE");
      expect(agent.stderr()).not.toContain('"secret"');
    },
  );

  it.each(["inotify", "chokidar"])(
    "--watcher %s: every file deep in the tree is open before 'tailing' (rotated away right after: still read)",
    async (watcher) => {
      const d = setup(["--log-level", "info", "--watcher", watcher]);
      const files: string[] = [];
      for (let p = 0; p < 100; p++) {
        const dir = join(d.logs, `ns_pod-${p}_uid`, "app");
        mkdirSync(dir, { recursive: true });
        files.push(join(dir, "0.log"));
        writeFileSync(join(dir, "0.log"), `old ${p}\n`);
      }
      const agent = startCli(d.args);
      await agent.waitForLog("tailing");
      // Rotated to a name the agent does not include: only a file opened before this is read.
      for (const [p, f] of files.entries()) {
        renameSync(f, `${f}.20261123`);
        writeFileSync(f, `new ${p}\n`);
      }
      await waitForCount(() => countLines(d.out), 200, { what: "lines of 100 rotated files" });
      await stopAgent(agent); // reads every open file to its end first: a line read twice shows below

      const texts = readStamped(d.out).map((l) => l.text);
      expect(texts.filter((t) => t.startsWith("old")).length).toBe(100);
      expect(texts.filter((t) => t.startsWith("new")).length).toBe(100);
      expect(texts.length).toBe(200);
    },
    60_000,
  );

  it("2,000 files at once: every line once", async () => {
    const d = setup(["--log-level", "warn"]);
    for (let i = 0; i < 2000; i++) {
      const sub = join(d.logs, `pod-${i % 50}`);
      if (i < 50) mkdirSync(sub);
      writeFileSync(
        join(sub, `f${i}.log`),
        Array.from({ length: 10 }, (_, j) => `f${i} line ${j}\n`).join(""),
      );
    }
    const agent = startCli(d.args);
    // Slow on a loaded machine, but it must keep moving: fails after 30 s without a new line.
    await waitForCount(() => countLines(d.out), 20_000, { stepMs: 250, what: "lines of 2,000 files" });
    await stopAgent(agent);
    const texts = readStamped(d.out).map((l) => l.text);
    expect(texts.length).toBe(20_000);
    expect(new Set(texts).size).toBe(20_000);
  }, 600_000);
});

describe("permission denied", () => {
  it("an unreadable file is reported (log + metric) and the rest keeps going", async () => {
    // Never skipped: the agent is started as nobody, which only root can do (CI runs as root).
    if (process.getuid?.() !== 0)
      throw new Error("this test must run as root (it starts the agent as nobody)");
    const d = setup(["--metrics-port", "0", "--log-level", "info"]);
    for (const p of [d.root, d.logs]) chmodSync(p, 0o777);
    writeFileSync(join(d.logs, "open.log"), "readable\n");
    writeFileSync(join(d.logs, "closed.log"), "hidden\n");
    chmodSync(join(d.logs, "open.log"), 0o644);
    chmodSync(join(d.logs, "closed.log"), 0o600);
    // Root reads everything: run the agent as nobody, as in a real non-root container.
    const agent = startCli(d.args, { uid: 65534, gid: 65534 });
    const started = await agent.waitForLog("serving /metrics, /healthz, /readyz");
    await until(() => readStampedSoFar(d.out).length >= 1);
    const metrics = await (await fetch(`http://127.0.0.1:${started.port}/metrics`)).text();
    await stopAgent(agent);
    expect(readStamped(d.out).map((l) => l.text)).toEqual(["readable"]);
    expect(agent.stderr()).toMatch(/cannot open file; skipping it.*EACCES|EACCES.*cannot open file/);
    expect(metrics).toMatch(/ikontainer_errors_total\{kind="permission"\} 1/);
  });
});
