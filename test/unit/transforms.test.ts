import { describe, expect, it } from "vitest";
import type { LineBatch } from "../../src/core/record.js";
import { RequestIdExtractor } from "../../src/transforms/request-id.js";
import { AppendEncoder, toStructured } from "../../src/transforms/tag.js";

const ids = new RequestIdExtractor();
const identity = { cuid: "0190b4c2-0000-7000-8000-000000000001", svc: "web.shop.cluster.local" };
const batch = (text: string): LineBatch => ({
  stream: { key: "file:0:a.log", path: "/logs/a.log", relPath: "a.log", channel: "file" },
  lines: [{ bytes: Buffer.from(text), offset: 0 }],
  inputId: "1:2",
  endOffset: text.length + 1,
  endPart: 0,
  readAt: Date.parse("2026-11-23T00:00:00Z"),
});

describe("request IDs", () => {
  it.each([
    ['{"x-request-id":"abc-1"}', "abc-1"],
    ['{"X-Request-Id":"abc-2"}', "abc-2"],
    ['{"request_id":"abc-3"}', "abc-3"],
    ['{"requestId":42}', "42"],
    ["GET /a x-request-id=abc-4 200", "abc-4"],
    ['msg="done" request_id: "abc-5"', "abc-5"],
    ["X-Request-ID: 6f1c2a", "6f1c2a"],
    [
      '[2026-11-23T10:00:00.000Z] "GET /api HTTP/1.1" 200 - 0 123 4 3 "10.0.0.1" "curl/8.0" "9b6b6f0e-1b2a-4c1a-9d5e-2f0b6a8c7d11" "api:8080" "10.0.0.7:8080"',
      "9b6b6f0e-1b2a-4c1a-9d5e-2f0b6a8c7d11",
    ],
    ["nothing here", undefined],
  ])("%s → %s", (line, want) => {
    const parsed = line.startsWith("{") ? (JSON.parse(line) as Record<string, unknown>) : undefined;
    expect(ids.extract(line, parsed)).toBe(want);
  });

  it("a configured regex wins; its first group is the ID", () => {
    expect(new RequestIdExtractor("trace=(\\w+)").extract("trace=T1 x-request-id=R1")).toBe("T1");
  });
});

describe("tagging", () => {
  it("append: the original bytes, then the compact tag, then \\n; nothing in between", () => {
    const out = new AppendEncoder(identity).encode(batch("hello world"));
    expect(out.toString()).toBe(
      `hello world{"ikontainer_CUID":"${identity.cuid}","svc":"web.shop.cluster.local"}\n`,
    );
  });

  it("json: a JSON line keeps its fields; the application's own tag moves to app_*", () => {
    const line = '{"msg":"paid","ikontainer_CUID":"evil","svc":"evil","user":7,"x-request-id":"r-9"}';
    const rec = toStructured(batch(line).lines[0]!, batch(line), {
      identity,
      requestIds: ids,
      fields: { pod: "web-1" },
    });
    expect(rec).toEqual({
      msg: "paid",
      user: 7,
      "x-request-id": "r-9",
      message: "paid",
      app_ikontainer_CUID: "evil",
      app_svc: "evil",
      ikontainer_CUID: identity.cuid,
      svc: identity.svc,
      "@timestamp": "2026-11-23T00:00:00.000Z",
      source: "/logs/a.log",
      request_id: "r-9",
      pod: "web-1",
    });
  });
});
