import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeUpdate, isDnsError, sendUpdate, transferZone } from "../../src/discovery/client.js";
import {
  extractTsig,
  makeKey,
  parseTsigSpec,
  readTsigFile,
  signMessage,
  TsigStreamVerifier,
  TsigVerifyError,
  verifyReply,
} from "../../src/discovery/tsig.js";
import { type KnotServer, startKnot } from "../fixtures/knot.js";

const key = makeKey("k1.example", "hmac-sha256", Buffer.from("0123456789abcdef0123456789abcdef"));

/** Captures the first UDP datagram a client sends to a port we listen on (the client gets no answer). */
async function captureDatagram(runClient: (port: number) => ReturnType<typeof spawn>): Promise<Buffer> {
  const sock = createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  const port = (sock.address() as { port: number }).port;
  const got = new Promise<Buffer>((resolve) => sock.once("message", (m) => resolve(m)));
  const child = runClient(port);
  try {
    return await got;
  } finally {
    child.kill("SIGKILL");
    sock.close();
  }
}

describe("TSIG (RFC 8945) signing", () => {
  it("matches BIND's nsupdate byte for byte on the same message, time and key (independent vector)", async () => {
    const secret = randomBytes(32).toString("base64");
    const dir = mkdtempSync(join(tmpdir(), "ikt-tsig-"));
    try {
      const wire = await captureDatagram((port) => {
        const script = join(dir, "cmds");
        writeFileSync(
          script,
          `server 127.0.0.1 ${port}\nzone vector.test.\nprereq yxrrset owner.vector.test. TXT\nupdate delete old.vector.test. A\nupdate add n1.vector.test. 30 A 127.0.0.9\nupdate add _http._tcp.vector.test. 30 SRV 0 0 8080 n1.vector.test.\nsend\n`,
        );
        return spawn("nsupdate", ["-y", `hmac-sha256:vector-key:${secret}`, "-t", "3", script], {
          stdio: "ignore",
        });
      });
      const theirs = extractTsig(wire);
      expect(theirs).toBeDefined();
      expect(theirs!.keyName).toBe("vector-key");
      expect(theirs!.algorithm).toBe("hmac-sha256");
      // Re-sign nsupdate's unsigned message with our signer at nsupdate's time: the MAC must be identical.
      const ours = signMessage(
        theirs!.unsigned,
        makeKey("vector-key", "hmac-sha256", Buffer.from(secret, "base64")),
        {
          now: theirs!.timeSigned * 1000,
          fudge: theirs!.fudge,
        },
      );
      expect(ours.mac.toString("hex")).toBe(theirs!.mac.toString("hex"));
      expect(ours.wire.equals(wire)).toBe(true);
      // And our UPDATE encoder produces the same message nsupdate built for the same prerequisites and updates.
      const mine = encodeUpdate(
        "vector.test",
        [{ kind: "rrsetExists", name: "owner.vector.test", type: "TXT" }],
        [
          { kind: "deleteRRset", name: "old.vector.test", type: "A" },
          { kind: "add", name: "n1.vector.test", type: "A", ttl: 30, data: "127.0.0.9" },
          {
            kind: "add",
            name: "_http._tcp.vector.test",
            type: "SRV",
            ttl: 30,
            data: { priority: 0, weight: 0, port: 8080, target: "n1.vector.test" },
          },
        ],
        theirs!.originalId,
      );
      // nsupdate compresses names; compare decoded sections instead of bytes.
      const { scanMessage } = await import("../../src/discovery/wire.js");
      const a = scanMessage(mine);
      const b = scanMessage(theirs!.unsigned);
      expect(a.counts).toEqual(b.counts);
      const shape = (s: typeof a) =>
        s.records.flat().map((r) => [r.name, r.type, r.klass, r.ttl, r.rdataEnd - r.rdataStart]);
      expect(shape(a)).toEqual(shape(b));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("verifies a reply signed over the request MAC and rejects a changed byte, a wrong key and a stale time", () => {
    const req = signMessage(encodeUpdate("z.test", [], [], 4242), key);
    // Build a "reply": same message with QR set, signed the way a server does (request MAC first).
    const body = Buffer.from(req.wire.subarray(0, extractTsig(req.wire)!.unsigned.length));
    body.writeUInt16BE(0, 10);
    body.writeUInt16BE(body.readUInt16BE(2) | 0x8000, 2);
    const signReply = (k: typeof key, now: number) => {
      const prefix = Buffer.from([0, req.mac.length]);
      const pseudo = Buffer.concat([prefix, req.mac, body]);
      const s = signMessage(pseudo, k, { now });
      // Move the MAC onto the real reply: same TSIG record, appended to `body`.
      const tsigRecord = s.wire.subarray(pseudo.length);
      const out = Buffer.concat([body, tsigRecord]);
      out.writeUInt16BE(1, 10);
      out.writeUInt16BE(4242, 0);
      out.writeUInt16BE(4242, out.length - 6); // TSIG original ID (error and other-len follow)
      return out;
    };
    const now = Date.now();
    const good = signReply(key, now);
    expect(verifyReply(good, key, req.mac, { now }).originalId).toBe(4242);

    const flipped = Buffer.from(good);
    flipped[21] = (flipped[21] ?? 0) ^ 1; // the question type
    expect(() => verifyReply(flipped, key, req.mac, { now })).toThrow(TsigVerifyError);

    const other = makeKey("k1.example", "hmac-sha256", Buffer.from("another secret, same key name!!!"));
    expect(() => verifyReply(signReply(other, now), key, req.mac, { now })).toThrow(/BADSIG/);
    expect(() => verifyReply(good, key, req.mac, { now: now + 3600_000 })).toThrow(/BADTIME/);
    expect(() => verifyReply(body, key, req.mac)).toThrow(/not signed/);
  });

  it("verifies a transfer stream with unsigned messages in between (RFC 8945 5.3.1), and catches a changed one", () => {
    // The test signs like a server would, with its own HMAC code: prior MAC (length-prefixed), the messages
    // since the last signed one, then only the timers (the first message: all TSIG variables).
    const req = signMessage(encodeUpdate("z.test", [], [], 7), key);
    const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
    const name = (n: string) =>
      Buffer.concat([
        ...n.split(".").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
        Buffer.from([0]),
      ]);
    const now = Math.floor(Date.now() / 1000);
    const timers = Buffer.concat([
      u16(0),
      Buffer.from([(now >>> 24) & 0xff, (now >>> 16) & 0xff, (now >>> 8) & 0xff, now & 0xff]),
      u16(300),
    ]);
    const body = (i: number) => {
      const m = Buffer.from(
        encodeUpdate(
          "z.test",
          [],
          [{ kind: "add", name: `r${i}.z.test`, type: "A", ttl: 5, data: "127.0.0.1" }],
          7,
        ),
      );
      m.writeUInt16BE(m.readUInt16BE(2) | 0x8000, 2);
      return m;
    };
    const attach = (m: Buffer, mac: Buffer) => {
      const rdata = Buffer.concat([
        name("hmac-sha256"),
        timers,
        u16(mac.length),
        mac,
        u16(7),
        u16(0),
        u16(0),
      ]);
      const rr = Buffer.concat([
        name("k1.example"),
        u16(250),
        u16(255),
        Buffer.alloc(4),
        u16(rdata.length),
        rdata,
      ]);
      const out = Buffer.concat([m, rr]);
      out.writeUInt16BE(m.readUInt16BE(10) + 1, 10);
      return out;
    };
    const mac = (parts: Buffer[]) => {
      const h = createHmac("sha256", key.secret);
      for (const p of parts) h.update(p);
      return h.digest();
    };
    const vars = Buffer.concat([
      name("k1.example"),
      u16(255),
      Buffer.alloc(4),
      name("hmac-sha256"),
      timers,
      u16(0),
      u16(0),
    ]);
    const m1 = body(1);
    const mac1 = mac([u16(req.mac.length), req.mac, m1, vars]);
    const m2 = body(2);
    const m3 = body(3);
    const mac3 = mac([u16(32), mac1, m2, m3, timers]);
    const stream = [attach(m1, mac1), m2, attach(m3, mac3)];

    const v = new TsigStreamVerifier(key, req.mac);
    for (const m of stream) v.next(m);
    expect(v.complete).toBe(true);

    const tampered = Buffer.from(m2);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    const v2 = new TsigStreamVerifier(key, req.mac);
    v2.next(stream[0]!);
    v2.next(tampered);
    expect(() => v2.next(stream[2]!)).toThrow(/BADSIG/);

    const v3 = new TsigStreamVerifier(key, req.mac);
    v3.next(stream[0]!);
    v3.next(m2);
    expect(v3.complete).toBe(false); // a transfer must end on a signed message
  });

  it("parses --tsig specs and key files (plain, BIND, keymgr) and never shows the secret", () => {
    const k = parseTsigSpec("ddns-key:hmac-sha512:c2VjcmV0c2VjcmV0");
    expect(k).toMatchObject({ name: "ddns-key", algorithm: "hmac-sha512" });
    expect(k.secret.toString()).toBe("secretsecret");
    expect(parseTsigSpec("hmac-sha1:ddns-key:c2VjcmV0c2VjcmV0").algorithm).toBe("hmac-sha1");
    expect(JSON.stringify(k)).not.toContain("c2VjcmV0");
    expect(String(Object.keys(k))).not.toContain("secret");
    expect(() => parseTsigSpec("a:hmac-sha999:c2VjcmV0")).toThrow(/unknown TSIG algorithm/);
    expect(() => parseTsigSpec("a:hmac-sha256:not base64!")).toThrow(/base64/);
    const dir = mkdtempSync(join(tmpdir(), "ikt-key-"));
    try {
      writeFileSync(
        join(dir, "bind.key"),
        'key "bind-key" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0c2VjcmV0";\n};\n',
      );
      expect(readTsigFile(join(dir, "bind.key"))).toMatchObject({
        name: "bind-key",
        algorithm: "hmac-sha256",
      });
      writeFileSync(
        join(dir, "knot.key"),
        "# hmac-sha256:knot-key:c2VjcmV0c2VjcmV0\nkey:\n  - id: knot-key\n    algorithm: hmac-sha256\n    secret: c2VjcmV0c2VjcmV0\n",
      );
      expect(readTsigFile(join(dir, "knot.key"))).toMatchObject({ name: "knot-key" });
      writeFileSync(join(dir, "plain"), "plain-key:hmac-sha256:c2VjcmV0c2VjcmV0\n");
      expect(readTsigFile(join(dir, "plain")).name).toBe("plain-key");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("TSIG against a real knotd", () => {
  let knot: KnotServer;
  beforeAll(async () => {
    knot = await startKnot();
  });
  afterAll(async () => {
    await knot?.stop();
  });

  it("knotd accepts our signed update and signs its reply, which we verify", async () => {
    const k = parseTsigSpec(knot.tsig);
    await sendUpdate(
      knot,
      k,
      knot.zone,
      [{ kind: "nameAbsent", name: `v1.${knot.zone}` }],
      [{ kind: "add", name: `v1.${knot.zone}`, type: "TXT", ttl: 30, data: ["hello=world"] }],
    );
    expect(await knot.dig(`v1.${knot.zone}`, "TXT")).toEqual(['"hello=world"']);
  });

  it("a wrong secret gets NOTAUTH / BADSIG with the zone named", async () => {
    const wrong = makeKey(knot.keyName, "hmac-sha256", randomBytes(32));
    const err = await sendUpdate(
      knot,
      wrong,
      knot.zone,
      [],
      [{ kind: "add", name: `v2.${knot.zone}`, type: "A", ttl: 30, data: "127.0.0.5" }],
    ).catch((e: unknown) => e);
    expect(isDnsError(err)).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`zone ${knot.zone}.*NOTAUTH.*BADSIG`));
    expect(await knot.dig(`v2.${knot.zone}`, "A")).toEqual([]);
  });

  it("an unknown key name gets NOTAUTH / BADKEY", async () => {
    const err = await sendUpdate(
      knot,
      makeKey("nobody", "hmac-sha256", randomBytes(32)),
      knot.zone,
      [],
      [{ kind: "add", name: `v3.${knot.zone}`, type: "A", ttl: 30, data: "127.0.0.5" }],
    ).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/NOTAUTH.*BADKEY/);
  });

  it("zone transfer: every message verified", async () => {
    const records = await transferZone(knot, parseTsigSpec(knot.tsig), knot.zone);
    expect(records.some((r) => r.name === `v1.${knot.zone}` && r.type === 16)).toBe(true);
    const err = await transferZone(
      knot,
      makeKey(knot.keyName, "hmac-sha256", randomBytes(32)),
      knot.zone,
    ).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/BADSIG/);
  });

  it("signed transfer of a zone with many records spans several messages and still verifies", async () => {
    const k = parseTsigSpec(knot.tsig);
    const adds = Array.from({ length: 600 }, (_, i) => ({
      kind: "add" as const,
      name: `bulk${i}.${knot.zone}`,
      type: "TXT" as const,
      ttl: 30,
      data: [`${"x".repeat(200)}${i}`],
    }));
    for (let i = 0; i < adds.length; i += 150)
      await sendUpdate(knot, k, knot.zone, [], adds.slice(i, i + 150));
    const records = await transferZone(knot, k, knot.zone);
    expect(records.filter((r) => r.name.startsWith("bulk")).length).toBe(600);
  });
});
