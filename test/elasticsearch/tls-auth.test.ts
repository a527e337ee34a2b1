import { execFile, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { esConnection } from "../../src/config/elasticsearch.js";
import { ElasticsearchSink } from "../../src/sinks/elasticsearch.js";
import { count, sharedElasticsearch } from "../fixtures/elasticsearch.js";
import { fileStream, makeBatches, structured } from "./batches.js";

// each test spawns the CLI or talks to Elasticsearch several times: room for a loaded machine
vi.setConfig({ testTimeout: 150_000 });

/**
 * The test node has no TLS or security (integration-test distribution), so TLS and auth are checked through
 * an HTTPS front (certificate from a CA made here with openssl) that demands credentials the way a secured
 * Elasticsearch does and forwards accepted requests to the real node.
 */
const run = promisify(execFile);
const MAIN = new URL("../../dist/cli/main.js", import.meta.url).pathname;
const API_KEY = "aWQxOmtleTE="; // base64("id1:key1")
const PASSWORD = "correct horse";

let url: string;
let dir: string;
let front: Server;
let frontUrl: string;
const seenAuth: string[] = [];

beforeAll(async () => {
  url = await sharedElasticsearch();
  dir = mkdtempSync(join(tmpdir(), "ikon-es-tls-"));
  const ssl = (...a: string[]) => execFileSync("openssl", a, { cwd: dir, stdio: "pipe" });
  ssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=ikontainer test CA",
  );
  ssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "srv.key",
    "-out",
    "srv.csr",
    "-subj",
    "/CN=127.0.0.1",
  );
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  ssl(
    "x509",
    "-req",
    "-in",
    "srv.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "srv.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  );
  const target = new URL(url);
  front = createServer(
    { key: readFileSync(join(dir, "srv.key")), cert: readFileSync(join(dir, "srv.pem")) },
    (req, res) => {
      const auth = req.headers.authorization ?? "";
      seenAuth.push(auth);
      const ok =
        auth === `ApiKey ${API_KEY}` ||
        auth === `Basic ${Buffer.from(`elastic:${PASSWORD}`).toString("base64")}`;
      if (!ok) {
        res.writeHead(401, { "content-type": "application/json", "x-elastic-product": "Elasticsearch" });
        res.end(
          JSON.stringify({
            error: { type: "security_exception", reason: "missing authentication credentials" },
            status: 401,
          }),
        );
        return;
      }
      const { host: _h, authorization: _a, ...headers } = req.headers;
      const up = request(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on("error", () => res.destroy());
      req.pipe(up);
    },
  );
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
  frontUrl = `https://127.0.0.1:${(front.address() as AddressInfo).port}`;
  writeFileSync(join(dir, "api-key"), `${API_KEY}\n`);
}, 310_000);

afterAll(() => {
  front?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("TLS with a custom CA, API key and basic auth", () => {
  it("the sink stores through https with --es-ca-file and an API key from a file", async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}-tls`;
    const s = new ElasticsearchSink({
      connection: esConnection(
        frontUrl,
        { esApiKeyFile: join(dir, "api-key"), esCaFile: join(dir, "ca.pem") },
        {},
      ),
      structured: structured(randomUUID(), "tls"),
      deadLetterPath: join(dir, "dead.jsonl"),
      indexPrefix: prefix,
    });
    await s.write(
      makeBatches({ stream: fileStream("t.log"), inputId: "1:1", lines: ["a", "b", "c"], perBatch: 3 })[0]!,
    );
    await s.close();
    expect(await count(url, `${prefix}-*`)).toBe(3);
    expect(seenAuth).toContain(`ApiKey ${API_KEY}`);
  });

  it("without the CA the certificate is refused, and without credentials the server's 401: nothing stored", async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}-tls`;
    const warnings: string[] = [];
    for (const conn of [
      esConnection(frontUrl, { esApiKeyFile: join(dir, "api-key") }, {}),
      esConnection(frontUrl, { esCaFile: join(dir, "ca.pem") }, {}),
    ]) {
      const s = new ElasticsearchSink({
        connection: conn,
        structured: structured(randomUUID(), "tls"),
        deadLetterPath: join(dir, "dead.jsonl"),
        indexPrefix: prefix,
        retryTimeout: 800,
        retryInitialDelay: 100,
        onWarn: (m, f) => warnings.push(`${m} ${JSON.stringify(f)}`),
      });
      await expect(
        s.write(makeBatches({ stream: fileStream("t.log"), inputId: "1:1", lines: ["x"], perBatch: 1 })[0]!),
      ).rejects.toThrow(/IKON|not accepted/);
      await s.close();
    }
    expect(warnings.join("\n")).toMatch(/certificate|self.signed|unable to verify/i);
    expect(warnings.join("\n")).toMatch(/401/);
    expect(warnings.join("\n")).not.toContain(API_KEY);
    expect(await count(url, `${prefix}-*`)).toBe(0);
  });

  it("query commands take the same settings: basic auth with the password from the environment", async () => {
    const r = await run(
      process.execPath,
      [
        MAIN,
        "whois",
        "10.255.255.254",
        "--es",
        frontUrl,
        "--es-ca-file",
        join(dir, "ca.pem"),
        "--es-username",
        "elastic",
        "--json",
      ],
      { env: { ...process.env, IKONTAINER_ES_PASSWORD: PASSWORD } },
    ).catch((e: { code: number; stdout: string; stderr: string }) => e);
    // nobody held that address: exit 1 with an empty answer, not an auth or TLS error
    expect((r as { code?: number }).code).toBe(1);
    expect(JSON.parse((r as { stdout: string }).stdout)).toEqual([]);
    expect(seenAuth).toContain(`Basic ${Buffer.from(`elastic:${PASSWORD}`).toString("base64")}`);
    const denied = await run(process.execPath, [
      MAIN,
      "whois",
      "10.255.255.254",
      "--es",
      frontUrl,
      "--es-ca-file",
      join(dir, "ca.pem"),
    ]).catch((e: { code: number; stderr: string }) => e);
    expect((denied as { code: number }).code).toBe(1);
    expect((denied as { stderr: string }).stderr).toMatch(/IKON_ERR_QUERY.*|security_exception/);
  });
});
