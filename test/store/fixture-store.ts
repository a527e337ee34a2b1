import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LineBatch, StreamInfo } from "../../src/core/record.js";
import { RequestIdExtractor } from "../../src/transforms/request-id.js";
import { AppendEncoder, encodeJsonLines } from "../../src/transforms/tag.js";

/**
 * A state dir as the agent leaves it: the file sink's output under store/ (mirroring source paths; json or
 * append format) and ledger.jsonl. Built with the project's own encoders, so it is byte-for-byte what the
 * agent writes (until the file sink lands in tests of its own).
 */
export const CUID_A = "0196f1c2-0000-7000-8000-00000000000a"; // frontend, 10.1.0.5, first holder
export const CUID_B = "0196f1c2-0000-7000-8000-00000000000b"; // checkout
export const CUID_C = "0196f1c2-0000-7000-8000-00000000000c"; // frontend again, later, same IP 10.1.0.5
export const REQ = "7f3a9c2e-1111-4222-8333-444455556666";

function batch(stream: StreamInfo, lines: Array<[string, string]>): LineBatch {
  let offset = 0;
  return {
    stream,
    inputId: `1:${stream.relPath}`,
    endOffset: 0,
    endPart: 0,
    readAt: Date.now(),
    lines: lines.map(([iso, text]) => {
      const bytes = Buffer.from(text);
      const l = { bytes, offset, time: Date.parse(iso) };
      offset += bytes.length + 1;
      return l;
    }),
  };
}

const stream = (rel: string): StreamInfo => ({
  key: `file:0:${rel}`,
  path: `/var/log/${rel}`,
  relPath: rel,
  channel: "file",
});

export function writeFixtureStore(stateDir: string): void {
  const store = join(stateDir, "store");
  const put = (rel: string, data: Buffer) => {
    mkdirSync(dirname(join(store, rel)), { recursive: true });
    writeFileSync(join(store, rel), data, { flag: "a" });
  };
  const ids = new RequestIdExtractor();
  // frontend (CUID A): json format
  put(
    "frontend/access.log",
    encodeJsonLines(
      batch(stream("frontend/access.log"), [
        ["2026-11-23T10:00:00.000Z", `GET /cart x-request-id=${REQ}`],
        ["2026-11-23T10:00:00.500Z", "unrelated line"],
        ["2026-11-23T10:00:03.000Z", JSON.stringify({ msg: "rendered cart", request_id: REQ })],
      ]),
      {
        identity: { cuid: CUID_A, svc: "frontend.shop.cluster.local" },
        requestIds: ids,
        fields: { pod: "frontend-1", pod_ip: "10.1.0.5" },
      },
    ),
  );
  // checkout (CUID B): append format (the paper's), request ID and time from the text
  put(
    "checkout/app.log",
    new AppendEncoder({ cuid: CUID_B, svc: "checkout.shop.cluster.local" }).encode(
      batch(stream("checkout/app.log"), [
        ["2026-11-23T10:00:01.000Z", `2026-11-23T10:00:01.000Z INFO charge started request_id=${REQ}`],
        [
          "2026-11-23T10:00:02.000Z",
          JSON.stringify({ time: "2026-11-23T10:00:02.000Z", msg: "charged", "x-request-id": REQ }),
        ],
        ["2026-11-23T10:00:02.500Z", "a line without time or request"],
      ]),
    ),
  );
  // frontend again (CUID C, a later instance on the same IP), json, another request
  put(
    "frontend/access.log",
    encodeJsonLines(
      batch(stream("frontend/access.log"), [["2026-11-23T11:00:00.000Z", "GET / x-request-id=other-req"]]),
      {
        identity: { cuid: CUID_C, svc: "frontend.shop.cluster.local" },
        requestIds: ids,
        fields: { pod: "frontend-2", pod_ip: "10.1.0.5" },
      },
    ),
  );
  put("not-stamped.txt", Buffer.from("a line no agent stamped\n"));
  const ledger = [
    {
      event: "start",
      cuid: CUID_A,
      svc: "frontend.shop.cluster.local",
      pod: "frontend-1",
      pod_ip: "10.1.0.5",
      started_at: "2026-11-23T09:00:00.000Z",
    },
    {
      event: "start",
      cuid: CUID_B,
      svc: "checkout.shop.cluster.local",
      pod: "checkout-1",
      namespace: "shop",
      pod_ip: "10.1.0.9",
      started_at: "2026-11-23T09:30:00.000Z",
    },
    // A never stopped cleanly (crash); C took over its IP
    {
      event: "start",
      cuid: CUID_C,
      svc: "frontend.shop.cluster.local",
      pod: "frontend-2",
      pod_ip: "10.1.0.5",
      started_at: "2026-11-23T10:30:00.000Z",
    },
    { event: "stop", cuid: CUID_B, stopped_at: "2026-11-23T12:00:00.000Z" },
  ];
  writeFileSync(join(stateDir, "ledger.jsonl"), `${ledger.map((e) => JSON.stringify(e)).join("\n")}\n`);
}
