import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ForwardReceiver } from "../fixtures/forward-server.js";
import {
  type AgentProcess,
  removeDir,
  runCli,
  runWriter,
  startCli,
  stopAgent,
  tempDir,
} from "../helpers/agent.js";
import { waitForCount } from "../helpers/progress.js";

/**
 * End to end through `ikontainer run --output fluentd://…`: the agent tails a file an application keeps
 * writing, is killed with SIGKILL while deliveries are in flight, and is started again on the same state dir.
 */

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

// The default ack timeout: a loaded machine can hold an ack back for seconds, and a chunk stored but acked after
// the timeout is sent again by design (docs/fluentd.md: the second at-least-once window), which these tests do
// not count on.
const ENV = {
  ...process.env,
  IKONTAINER_FLUENTD_ACK_TIMEOUT: "30s",
  IKONTAINER_FLUENTD_CONNECT_TIMEOUT: "1s",
  IKONTAINER_FLUENTD_RECONNECT_MAX: "300ms",
};

/** Settings through the environment, or (`flags`) through run's --fluentd-* and --buffer-* flags. */
function agent(logs: string, state: string, port: number, how: "env" | "flags" = "env"): AgentProcess {
  const base = [
    "run",
    "--watch",
    logs,
    "--output",
    `fluentd://127.0.0.1:${port}`,
    "--svc",
    "web",
    "--state-dir",
    state,
  ];
  const flags = [
    "--fluentd-ack-timeout",
    "30s",
    "--fluentd-connect-timeout",
    "1s",
    "--fluentd-reconnect-max",
    "300ms",
    "--buffer-max-bytes",
    "8MiB",
  ];
  const a = startCli(how === "env" ? base : [...base, ...flags], { env: how === "env" ? ENV : process.env });
  cleanup.push(() =>
    a.child.exitCode === null && a.child.signalCode === null ? stopAgent(a, "SIGKILL") : undefined,
  );
  return a;
}

/** Counts each `seq=<n>` the receiver stored. */
function counter(r: ForwardReceiver) {
  const counts = new Map<number, number>();
  const push = r.stored.push.bind(r.stored);
  r.stored.push = (...items) => {
    for (const e of items) {
      const m = /^seq=(\d+) /.exec(String(e.record.message));
      if (m) counts.set(Number(m[1]), (counts.get(Number(m[1])) ?? 0) + 1);
    }
    return push(...items);
  };
  return {
    counts,
    report(total: number) {
      let missing = 0;
      let dup = 0;
      for (let i = 0; i < total; i++) {
        const c = counts.get(i) ?? 0;
        if (c === 0) missing++;
        if (c > 1) dup += c - 1;
      }
      return { missing, dup };
    },
  };
}

const segBytes = (state: string): number => {
  let n = 0;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith(".seg")) n += statSync(p).size;
    }
  };
  walk(join(state, "buffer"));
  return n;
};

/**
 * Lines of the writer's file the agent has recorded as delivered: the highest line offset in its
 * delivered.log records (`d`: [input, loOffset, loPart, hiOffset, hiPart, end]), with lines `lineBytes` long.
 */
function recordedLines(state: string, lineBytes: number): number {
  let hi = -1;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name === "delivered.log")
        for (const line of readFileSync(p, "utf8").split("\n")) {
          try {
            for (const x of (JSON.parse(line) as { d?: number[][] }).d ?? []) hi = Math.max(hi, x[3]!);
          } catch {
            // a torn last line
          }
        }
    }
  };
  walk(join(state, "buffer"));
  return hi < 0 ? 0 : Math.floor(hi / lineBytes) + 1;
}

describe("agent with a fluentd output, killed with SIGKILL and restarted", () => {
  it("a chunk unacknowledged at the kill, a backlog on disk: every line reaches fluentd exactly once", async () => {
    const logs = tempDir("ikon-f9-logs-");
    const state = tempDir("ikon-f9-state-");
    cleanup.push(
      () => removeDir(logs),
      () => removeDir(state),
    );
    const r = await new ForwardReceiver().start();
    cleanup.push(() => r.stop());
    r.ackDelayMs = 5;
    const c = counter(r);
    const total = 30_000;
    const writer = runWriter([join(logs, "app.log"), total, 8000, "none", 0, "k9", 120]);

    const a = agent(logs, state, r.port);
    await waitForCount(() => r.stored.length, 4000, { what: "entries stored before withholding acks" });
    // From here the receiver takes chunks but never acknowledges them (so none is stored): the kill lands
    // while a delivery is in flight and the agent keeps buffering what the application writes.
    r.onChunk = () => "withhold";
    await waitForCount(() => r.discarded, 1, { what: "a chunk withheld" });
    // Every chunk acknowledged before is recorded by the agent (else the kill would land in the documented
    // at-least-once window, which the next test covers); the withheld delivery is in flight at the kill.
    await waitForCount(() => recordedLines(state, 120), c.counts.size, {
      what: "the agent recording the acknowledged chunks",
    });
    await stopAgent(a, "SIGKILL");
    const backlog = segBytes(state);
    expect(backlog).toBeGreaterThan(0);

    r.onChunk = () => "ack";
    const b = agent(logs, state, r.port);
    await writer;
    await waitForCount(() => c.counts.size, total, { what: "distinct lines stored" });
    // once the agent has exited and the receiver has handled the close, nothing more can arrive
    await stopAgent(b, "SIGTERM");
    await r.quiet();
    expect(c.report(total)).toEqual({ missing: 0, dup: 0 });
    for (const e of r.stored.slice(0, 3)) expect(e.tag).toBe("ikontainer.web");
    console.log(
      `kill -9 with an unacked chunk: backlog on disk ${backlog} bytes, ${r.discarded} entries withheld, all ${total} lines once`,
    );
  });

  it("killed while acks flow: nothing is lost; a duplicate is possible only for the round acked at the kill", async () => {
    const logs = tempDir("ikon-f9-logs-");
    const state = tempDir("ikon-f9-state-");
    cleanup.push(
      () => removeDir(logs),
      () => removeDir(state),
    );
    const r = await new ForwardReceiver().start();
    cleanup.push(() => r.stop());
    r.ackDelayMs = 2;
    const c = counter(r);
    const total = 20_000;
    const writer = runWriter([join(logs, "app.log"), total, 8000, "none", 0, "k9b", 120]);
    const a = agent(logs, state, r.port, "flags");
    await waitForCount(() => r.stored.length, 6000, { what: "entries stored before the kill" });
    await stopAgent(a, "SIGKILL");
    // Read the acks only after the receiver has seen the connection close and run its delayed acks: a
    // chunk it still commits after the kill belongs to the rounds acknowledged "at the kill".
    await r.quiet();
    // Chunks fluentd acknowledged last before the kill: up to two rounds are in flight at once.
    const [last1 = 0, last2 = 0] = [...r.ackedChunkSizes].reverse();
    const b = agent(logs, state, r.port, "flags");
    await writer;
    await waitForCount(() => c.counts.size, total, { what: "distinct lines stored" });
    await stopAgent(b, "SIGTERM");
    await r.quiet();
    const rep = c.report(total);
    expect(rep.missing).toBe(0);
    // The at-least-once window (docs/fluentd.md): fluentd acknowledged the last chunk(s) before the kill but
    // the agent died before recording that; then exactly those chunks come again. Anything else is a bug.
    const resent = [a, b].flatMap((x) =>
      x
        .stderr()
        .split("\n")
        .filter((l) => /did not acknowledge|not acknowledged|connection to fluentd lost/.test(l)),
    );
    expect(
      [0, last1, last1 + last2],
      `${rep.dup} duplicates; attempts that failed (each is sent again):\n${resent.join("\n")}`,
    ).toContain(rep.dup);
    console.log(
      `kill -9 while acks flow: missing ${rep.missing}, duplicates ${rep.dup} of ${total} (last chunks before the kill: ${last1}, ${last2})`,
    );
  });
});

describe("ikontainer exec with a fluentd output", () => {
  it("receiver down during a first run: its lines wait on disk and the next run delivers them, once", async () => {
    const state = tempDir("ikon-fexec-");
    cleanup.push(() => removeDir(state));
    const r = new ForwardReceiver();
    await r.start();
    const port = r.port;
    await r.stop(); // down for the first run
    const run = (words: string) =>
      runCli(
        [
          "exec",
          "--svc",
          "job",
          "--state-dir",
          state,
          "--output",
          `fluentd://127.0.0.1:${port}`,
          "--",
          "sh",
          "-c",
          `for w in ${words}; do echo "$w"; done`,
        ],
        { env: ENV },
      );
    const first = await run("one two three");
    expect(first.code).toBe(0);
    expect(segBytes(state)).toBeGreaterThan(0);
    const up = new ForwardReceiver({ port });
    await up.start();
    cleanup.push(() => up.stop());
    const second = await run("four five");
    expect(second.code).toBe(0);
    await waitForCount(() => up.stored.length, 5, { what: "the buffered and the new lines" });
    await up.quiet(); // the run has exited: once its connection is closed, nothing more can arrive
    const msgs = up.stored.map((e) => e.record.message).sort();
    expect(msgs).toEqual(["five", "four", "one", "three", "two"]);
    expect(new Set(up.stored.map((e) => e.record.ikontainer_CUID)).size).toBe(1);
    expect(up.stored.every((e) => e.tag === "ikontainer.job" && e.record.stream === "stdout")).toBe(true);
  });
});
