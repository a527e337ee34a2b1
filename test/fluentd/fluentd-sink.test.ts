import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { EventTime } from "@fluent-org/logger";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { IkontainerError } from "../../src/core/errors.js";
import { BufferedSink } from "../../src/sinks/buffer.js";
import { documentId } from "../../src/sinks/elasticsearch.js";
import { createFluentdSink, eventTimeOf, FluentdSink, parseFluentdSpec } from "../../src/sinks/fluentd.js";
import { downwardFields } from "../../src/transforms/tag.js";
import { ForwardReceiver, makeTestPki, receiverTls, type TestPki } from "../fixtures/forward-server.js";
import { batchOf, CUID, exactlyOnce, indexes, structured } from "./batches.js";

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const open: Array<{ close(): Promise<void> } | { stop(): Promise<void> }> = [];
afterEach(async () => {
  for (const x of open.splice(0)) await ("stop" in x ? x.stop() : x.close());
});

function sink(port: number, extra: Partial<ConstructorParameters<typeof FluentdSink>[0]> = {}): FluentdSink {
  const s = new FluentdSink({
    host: "127.0.0.1",
    port,
    structured: structured(),
    ackTimeoutMs: 2000,
    connectTimeoutMs: 1500,
    ...extra,
  });
  open.push(s);
  return s;
}

async function receiver(
  opts: ConstructorParameters<typeof ForwardReceiver>[0] = {},
): Promise<ForwardReceiver> {
  const r = await new ForwardReceiver(opts).start();
  open.push(r);
  return r;
}

describe("fluentd sink (forward protocol with acks)", () => {
  it("sends structured records tagged ikontainer.<svc> with sub-second event time and Downward-API fields", async () => {
    const r = await receiver();
    const fields = downwardFields({
      POD_NAME: "api-7d9f",
      POD_NAMESPACE: "shop",
      NODE_NAME: "node-1",
      POD_IP: "10.1.2.3",
    });
    const s = sink(r.port, { structured: structured(fields) });
    const batch = batchOf(0, 5);
    batch.lines.push({
      bytes: Buffer.from('{"msg":"json line","x-request-id":"abc-123","level":"info"}'),
      offset: 500,
      time: 1_700_000_000_999,
    });
    await s.write(batch);
    // Resolved only after the ack, and the receiver stores a chunk before acking: all there, now.
    expect(r.stored).toHaveLength(6);
    const first = r.stored[0]!;
    expect(first.tag).toBe("ikontainer.api.shop.svc.cluster.local");
    expect(first.time).toBeInstanceOf(EventTime);
    expect((first.time as EventTime).epoch).toBe(1_700_000_000);
    expect((first.time as EventTime).nano).toBe(123_000_000);
    expect(first.record).toMatchObject({
      message: "line 0 request_id=req-0",
      ikontainer_CUID: CUID,
      svc: "api.shop.svc.cluster.local",
      request_id: "req-0",
      source: "/var/log/app/app.log",
      pod: "api-7d9f",
      namespace: "shop",
      node: "node-1",
      pod_ip: "10.1.2.3",
    });
    // Same offset and _id as the Elasticsearch sink, for `id_key ikontainer_id` in out_elasticsearch.
    expect(first.record.ikontainer_offset).toBe(0);
    expect(first.record.ikontainer_id).toBe(documentId(CUID, batch, 0, undefined, batch.lines[0]!.bytes));
    expect(new Set(r.stored.map((e) => e.record.ikontainer_id)).size).toBe(6);
    const json = r.stored[5]!;
    expect(json.record).toMatchObject({
      message: "json line",
      request_id: "abc-123",
      level: "info",
      ikontainer_CUID: CUID,
    });
    expect((json.time as EventTime).nano).toBe(999_000_000);
  });

  it("keeps nanoseconds from CRI timestamps", () => {
    const b = batchOf(0, 1);
    const t = eventTimeOf({ ...b.lines[0]!, timeText: "2024-05-01T10:20:30.123456789Z" }, b);
    expect(t.epoch).toBe(Date.parse("2024-05-01T10:20:30Z") / 1000);
    expect(t.nano).toBe(123_456_789);
  });

  it("a receiver that never acks: the write fails, nothing is stored, the retry stores each line once", async () => {
    const r = await receiver();
    let withhold = true;
    r.onChunk = () => (withhold ? "withhold" : "ack");
    const s = sink(r.port, { ackTimeoutMs: 300 });
    const err = await s.write(batchOf(0, 20)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IkontainerError);
    expect((err as IkontainerError).code).toBe("IKON_ERR_SINK");
    expect((err as Error).message).toMatch(/did not acknowledge/);
    expect(r.stored).toHaveLength(0);
    expect(r.discarded).toBe(20);
    withhold = false;
    await s.write(batchOf(0, 20));
    expect(exactlyOnce(indexes(r.stored.map((e) => e.record.message)), 20)).toEqual({
      missing: [],
      duplicated: [],
    });
  });

  it("a receiver that is down when the sink starts: the write fails fast, then succeeds once it listens", async () => {
    const port = await freePort();
    const s = sink(port, { connectTimeoutMs: 500, reconnectMaxMs: 200 });
    // Fails on the refusal itself (the message names it), not by waiting: how fast is a figure for bench/.
    await expect(s.write(batchOf(0, 3))).rejects.toThrow(/cannot connect to fluentd.*ECONNREFUSED/);
    const r = new ForwardReceiver({ port });
    await r.start();
    open.push(r);
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++)
      ok = await s.write(batchOf(0, 3)).then(
        () => true,
        () => false,
      );
    expect(ok).toBe(true);
    expect(exactlyOnce(indexes(r.stored.map((e) => e.record.message)), 3)).toEqual({
      missing: [],
      duplicated: [],
    });
  });

  it("a dropped connection fails the batch; the next write reconnects", async () => {
    const r = await receiver();
    r.onChunk = (i) => (i === 1 ? "drop" : "ack");
    const s = sink(r.port, { ackTimeoutMs: 8000 });
    await s.write(batchOf(0, 10));
    // Noticed at the close, not at the ack timeout: that one would reject with "did not acknowledge".
    await expect(s.write(batchOf(10, 20))).rejects.toThrow(/connection to fluentd lost/);
    await s.write(batchOf(10, 20));
    expect(r.connections).toBeGreaterThanOrEqual(2);
    expect(exactlyOnce(indexes(r.stored.map((e) => e.record.message)), 20)).toEqual({
      missing: [],
      duplicated: [],
    });
  });

  describe("TLS and shared key", () => {
    let pki: TestPki;
    beforeAll(() => {
      pki = makeTestPki();
    });
    afterAll(() => pki.cleanup());

    it("mutual TLS with a custom CA and a shared key from a file; the key never shows in errors", async () => {
      const key = "s3cr3t-shared-key-do-not-log";
      const r = await receiver({ tls: receiverTls(pki, true), sharedKey: key });
      const keyFile = join(pki.dir, "shared_key");
      writeFileSync(keyFile, `${key}\n`);
      const spec = `fluentd://127.0.0.1:${r.port}?ca=${pki.ca}&cert=${pki.clientCert}&key=${pki.clientKey}&shared-key-file=${keyFile}&connect-timeout=2s`;
      const s = createFluentdSink(spec, {
        structured: structured(),
        stateDir: pki.dir,
        settings: { buffer: false },
        env: {},
      });
      open.push(s);
      expect(s).toBeInstanceOf(FluentdSink);
      await s.write(batchOf(0, 4));
      expect(r.stored).toHaveLength(4);

      // Wrong key (from the environment this time): refused, with a hint, and no secret in the message.
      writeFileSync(keyFile, "wrong-key");
      const bad = createFluentdSink(spec.replace(/&shared-key-file=[^&]+/, ""), {
        structured: structured(),
        stateDir: pki.dir,
        settings: { buffer: false },
        env: { IKONTAINER_FLUENTD_SHARED_KEY: "wrong-key-value" },
      });
      open.push(bad);
      const err = (await bad.write(batchOf(4, 5)).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(IkontainerError);
      expect(err.message).toMatch(/authentication failed/);
      expect(err.message).not.toContain("wrong-key-value");
      expect(err.message).not.toContain(key);
      expect(r.stored).toHaveLength(4);
    });

    it("shared key with user authentication: password from a file works, a wrong one is refused", async () => {
      const r = await receiver({ sharedKey: "k3y", users: { agent: "pa55word" } });
      const pw = join(pki.dir, "fluentd_password");
      writeFileSync(pw, "pa55word\n");
      const ctx = (env: NodeJS.ProcessEnv) => ({
        structured: structured(),
        stateDir: pki.dir,
        settings: { buffer: false },
        env,
      });
      const spec = `fluentd://127.0.0.1:${r.port}?username=agent&password-file=${pw}&connect-timeout=2s`;
      const ok = createFluentdSink(spec, ctx({ IKONTAINER_FLUENTD_SHARED_KEY: "k3y" }));
      open.push(ok);
      await ok.write(batchOf(0, 2));
      expect(r.stored).toHaveLength(2);
      const bad = createFluentdSink(
        spec.replace(/&password-file=[^&]+/, ""),
        ctx({ IKONTAINER_FLUENTD_SHARED_KEY: "k3y", IKONTAINER_FLUENTD_PASSWORD: "nope-secret" }),
      );
      open.push(bad);
      const err = (await bad.write(batchOf(2, 3)).catch((e: unknown) => e)) as Error;
      expect(err.message).toMatch(/authentication failed/);
      expect(err.message).not.toContain("nope-secret");
      expect(r.stored).toHaveLength(2);
    });

    it("a receiver certificate from another CA is refused", async () => {
      const other = makeTestPki();
      try {
        const r = await receiver({ tls: receiverTls(other, false) });
        const s = createFluentdSink(`fluentd://127.0.0.1:${r.port}?ca=${pki.ca}&connect-timeout=1s`, {
          structured: structured(),
          stateDir: pki.dir,
          settings: { buffer: false },
          env: {},
        });
        open.push(s);
        await expect(s.write(batchOf(0, 1))).rejects.toThrow(
          /cannot connect.*(certificate|self.signed|issuer)/i,
        );
        expect(r.stored).toHaveLength(0);
      } finally {
        other.cleanup();
      }
    });
  });

  it("parses the output spec: defaults, per-output options, errors that name the option", () => {
    const a = parseFluentdSpec("fluentd://agg.logging:24225", {}, {});
    expect(a).toMatchObject({ host: "agg.logging", port: 24225 });
    expect(a.settings.fluentdAckTimeout).toBe(30_000);
    expect(parseFluentdSpec("fluentd://[::1]", {}, {}).port).toBe(24224);
    const b = parseFluentdSpec("fluentd://h:1?tls&ack-timeout=5s", { fluentdAckTimeout: 1000 }, {});
    expect(b.settings).toMatchObject({ fluentdTls: true, fluentdAckTimeout: 5000 });
    expect(
      parseFluentdSpec("fluentd://h:1", {}, { IKONTAINER_FLUENTD_ACK_TIMEOUT: "2s" }).settings
        .fluentdAckTimeout,
    ).toBe(2000);
    expect(() => parseFluentdSpec("fluentd://h:1?bogus=1", {}, {})).toThrow(/unknown option "bogus"/);
    expect(() => parseFluentdSpec("fluentd://h:99999", {}, {})).toThrow(/HOST:PORT/);
    const buffered = createFluentdSink("fluentd://127.0.0.1:1", {
      structured: structured(),
      stateDir: "/tmp/x",
      settings: {},
      env: {},
    });
    expect(buffered).toBeInstanceOf(BufferedSink);
    expect(buffered.id).toBe("fluentd://127.0.0.1:1");
  });
});
