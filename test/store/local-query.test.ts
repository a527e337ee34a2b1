import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LocalStore, parseStoreLine } from "../../src/store/local.js";
import { collect } from "../../src/store/query.js";
import { CUID_A, CUID_B, CUID_C, REQ, writeFixtureStore } from "./fixture-store.js";

// each test spawns the CLI or talks to Elasticsearch several times: room for a loaded machine
vi.setConfig({ testTimeout: 150_000 });

const run = promisify(execFile);
const MAIN = new URL("../../dist/cli/main.js", import.meta.url).pathname;
let dir: string;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args], { cwd: dir });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "ikon-local-query-"));
  writeFixtureStore(join(dir, "st"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("store lines", () => {
  it("reads json records and append-format lines (the tag is the last object on the line)", () => {
    const app = JSON.stringify({ msg: "x", ikontainer_CUID: "forged" });
    const r = parseStoreLine(`${app}{"ikontainer_CUID":"${CUID_B}","svc":"s","ikontainer_part":2}`)!;
    expect(r.cuid).toBe(CUID_B);
    expect(r.message).toBe(app);
    expect(parseStoreLine("no tag here")).toBeUndefined();
    expect(
      parseStoreLine(
        `{"message":"m","ikontainer_CUID":"${CUID_A}","svc":"s","@timestamp":"2026-01-01T00:00:00.000Z","request_id":"r"}`,
      ),
    ).toEqual({
      cuid: CUID_A,
      svc: "s",
      message: "m",
      request_id: "r",
      time: "2026-01-01T00:00:00.000Z",
    });
  });

  it("filters by CUID, request ID, svc and time; append lines get pod fields from the ledger", async () => {
    const store = new LocalStore([join(dir, "st", "store")], join(dir, "st"));
    const a = await collect(store.logs({ cuid: CUID_A }));
    expect(a.map((r) => r.message)).toEqual([
      `GET /cart x-request-id=${REQ}`,
      "unrelated line",
      "rendered cart",
    ]);
    const b = await collect(store.logs({ cuid: CUID_B, requestId: REQ }));
    expect(b).toHaveLength(2);
    expect(b[0]!.pod_ip).toBe("10.1.0.9");
    expect(b[1]!.time).toBe("2026-11-23T10:00:02.000Z");
    const timed = await collect(
      store.logs({
        svc: "frontend.shop.cluster.local",
        since: Date.parse("2026-11-23T10:00:01Z"),
      }),
    );
    expect(timed.map((r) => r.cuid)).toEqual([CUID_A, CUID_C]);
    // a line without a time is only returned when no time filter is given
    expect((await collect(store.logs({ cuid: CUID_B }))).length).toBe(3);
    expect(
      (await collect(store.logs({ cuid: CUID_B, until: Date.parse("2027-01-01T00:00:00Z") }))).length,
    ).toBe(2);
  });
});

describe("query commands on the local store (built CLI)", () => {
  it("logs --cuid --request-id prints a table, --json one object per line", async () => {
    const t = await cli("logs", "--state-dir", "st", "--cuid", CUID_B, "--request-id", REQ);
    expect(t.code).toBe(0);
    const rows = t.stdout.trim().split("\n");
    expect(rows[0]).toMatch(/^TIME\s+SVC\s+CUID\s+REQUEST-ID\s+MESSAGE$/);
    expect(rows).toHaveLength(3);
    expect(rows[1]).toContain("charge started");
    const j = await cli(
      "logs",
      "--state-dir",
      "st",
      "--cuid",
      CUID_A,
      "--json",
      "--since",
      "2026-11-23T10:00:01Z",
    );
    const recs = j.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(recs.map((r) => r.message)).toEqual(["rendered cart"]);
    const none = await cli("logs", "--state-dir", "st", "--cuid", "nope");
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("no lines match");
    const bad = await cli("logs", "--state-dir", "st", "--cuid", CUID_A, "--since", "yesterday-ish");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("IKON_ERR_INVALID_SETTING");
  });

  it("trace follows the request through both containers in time order", async () => {
    const j = await cli("trace", REQ, "--state-dir", "st", "--json");
    expect(j.code).toBe(0);
    const t = JSON.parse(j.stdout) as {
      hops: Array<{ cuid: string; svc: string; pod_ip: string; lines: unknown[] }>;
    };
    expect(t.hops.map((h) => [h.cuid, h.svc, h.pod_ip, h.lines.length])).toEqual([
      [CUID_A, "frontend.shop.cluster.local", "10.1.0.5", 2],
      [CUID_B, "checkout.shop.cluster.local", "10.1.0.9", 2],
    ]);
    const text = await cli("trace", REQ, "--state-dir", "st");
    expect(text.stdout).toMatch(
      /^1\. frontend\.shop\.cluster\.local\s+cuid 0196f1c2-0000-7000-8000-00000000000a/,
    );
    expect(text.stdout).toMatch(
      /\n2\. checkout\.shop\.cluster\.local\s+cuid 0196f1c2-0000-7000-8000-00000000000b\s+pod checkout-1\s+ip 10\.1\.0\.9/,
    );
    expect((await cli("trace", "no-such-request", "--state-dir", "st")).code).toBe(1);
  });

  it("whois answers which instance held an IP at a moment, and lists both holders otherwise", async () => {
    const at1 = JSON.parse(
      (await cli("whois", "10.1.0.5", "--at", "2026-11-23T10:00:00Z", "--state-dir", "st", "--json")).stdout,
    );
    expect(at1.map((m: { cuid: string }) => m.cuid)).toEqual([CUID_A]);
    expect(at1[0]).toMatchObject({ held_until: "2026-11-23T10:30:00.000Z", end_inferred: true });
    const at2 = JSON.parse(
      (await cli("whois", "10.1.0.5", "--at", "2026-11-23T11:00:00Z", "--state-dir", "st", "--json")).stdout,
    );
    expect(at2.map((m: { cuid: string }) => m.cuid)).toEqual([CUID_C]);
    const all = await cli("whois", "10.1.0.5", "--state-dir", "st");
    const lines = all.stdout.trim().split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[1]).toContain(CUID_A);
    expect(lines[1]).toContain("2026-11-23T10:30:00.000Z (inferred)");
    expect(lines[2]).toContain(CUID_C);
    expect(lines[2]).toMatch(/running$/);
    const before = await cli("whois", "10.1.0.5", "--at", "2026-11-23T08:00:00Z", "--state-dir", "st");
    expect(before.code).toBe(1);
    expect((await cli("whois", "not-an-ip", "--state-dir", "st")).code).toBe(2);
  });
});
