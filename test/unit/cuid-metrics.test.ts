import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isUuid, newCuid, uuidV7 } from "../../src/core/cuid.js";
import { Counter, Gauge, Registry } from "../../src/observe/prom.js";

describe("CUIDs (RFC 9562)", () => {
  it("v7: time-ordered, version 7, RFC variant, 74 random bits", () => {
    const t = Date.UTC(2026, 10, 23, 8, 0, 0, 123);
    const u = uuidV7(t);
    expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number.parseInt(u.replace(/-/g, "").slice(0, 12), 16)).toBe(t);
    expect(uuidV7(t + 1) > uuidV7(t)).toBe(true); // sortable by creation time (ms)
    const many = new Set(Array.from({ length: 10_000 }, () => uuidV7(t)));
    expect(many.size).toBe(10_000); // same millisecond: still unique
  });

  it("v4 and validation", () => {
    expect(newCuid(4)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(isUuid(newCuid(7))).toBe(true);
    for (const bad of [
      "",
      "not-a-uuid",
      "01a20787-320a-7368-0c75-e68007e05819",
      "01a20787320a73688c75e68007e05819",
      7,
    ])
      expect(isUuid(bad), String(bad)).toBe(false);
  });

  it("v7 CUIDs minted by one process are strictly increasing, also within one millisecond", () => {
    const cuids = Array.from({ length: 10_000 }, () => newCuid(7));
    let sameMs = 0;
    for (let i = 1; i < cuids.length; i++) {
      expect(cuids[i]! > cuids[i - 1]!, `${cuids[i - 1]} then ${cuids[i]}`).toBe(true);
      if (cuids[i]!.slice(0, 13) === cuids[i - 1]!.slice(0, 13)) sameMs++;
    }
    expect(sameMs).toBeGreaterThan(100); // the case that matters happened
  });

  it("the uuid package is imported only where CUIDs are minted (src/core/cuid.ts)", () => {
    const src = new URL("../../src/", import.meta.url).pathname;
    const importers = (readdirSync(src, { recursive: true }) as string[])
      .filter((f) => f.endsWith(".ts"))
      .filter((f) =>
        /from "uuid"|import\("uuid"\)|require\("uuid"\)/.test(readFileSync(join(src, f), "utf8")),
      );
    expect(importers).toEqual(["core/cuid.ts"]);
  });
});

describe("Prometheus exposition", () => {
  it("counters and gauges, with and without labels, escaped, in the text format", async () => {
    const r = new Registry();
    const c = new Counter({ name: "t_lines_total", help: "Lines\nread", registers: [r] });
    const e = new Counter({
      name: "t_errors_total",
      help: "Errors",
      labelNames: ["kind", "sink"],
      registers: [r],
    });
    const g = new Gauge({ name: "t_lag", help: 'Lag "bytes" \\', labelNames: ["sink"], registers: [r] });
    c.inc();
    c.inc(41);
    e.inc({ sink: 'a"b\\c\nd', kind: "read" });
    e.inc({ kind: "read", sink: 'a"b\\c\nd' }, 2);
    g.set({ sink: "x" }, 5);
    g.dec({ sink: "x" });
    g.inc({ sink: "y" }, 0.5);
    const text = await r.metrics();
    expect(text).toBe(
      [
        "# HELP t_lines_total Lines\\nread",
        "# TYPE t_lines_total counter",
        "t_lines_total 42",
        "",
        "# HELP t_errors_total Errors",
        "# TYPE t_errors_total counter",
        't_errors_total{kind="read",sink="a\\"b\\\\c\\nd"} 3',
        "",
        '# HELP t_lag Lag "bytes" \\\\',
        "# TYPE t_lag gauge",
        't_lag{sink="x"} 4',
        't_lag{sink="y"} 0.5',
        "",
      ].join("\n"),
    );
    expect(r.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect((await r.getSingleMetric("t_errors_total")!.get()).values).toEqual([
      { value: 3, labels: { kind: "read", sink: 'a"b\\c\nd' } },
    ]);
    expect(() => c.inc(-1)).toThrow(/cannot decrease/);
    expect(() => e.inc({ nope: "x" })).toThrow(/unknown label/);
    expect(() => new Counter({ name: "t_lines_total", help: "again", registers: [r] })).toThrow(
      /already registered/,
    );
    expect(() => new Counter({ name: "bad-name", help: "x" })).toThrow(/invalid metric name/);
  });
});
