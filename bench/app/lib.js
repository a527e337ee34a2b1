// Shared plumbing of the benchmark app (a small paper-search service shaped like the paper's experiment).
// Plain JavaScript on purpose: it plays "the user's application", which the agent must not need to know.
//
// Every service logs exactly one info line per request it serves, with its per-process sequence number
// and the propagated x-request-id, either to a file (sidecar style, LOG_FILE) or to stdout (exec style).
// Sequence numbers let the benchmark count lost and duplicated lines exactly after the agent tagged them.

import { randomUUID } from "node:crypto";
import { createWriteStream, mkdirSync } from "node:fs";
import http from "node:http";
import { dirname } from "node:path";

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** Settings come from the environment so `ikontainer exec -- node api.js` needs no extra flags. */
export function settings(svc) {
  const port = Number(process.env.PORT ?? 0);
  const logFile = process.env.LOG_FILE; // unset → stdout
  return { svc, port, logFile, host: process.env.HOST ?? "127.0.0.1" };
}

/** One info line per request; `lines` counts what was handed to the log destination. */
export class RequestLog {
  constructor(svc, logFile) {
    this.svc = svc;
    this.lines = 0;
    if (logFile) {
      mkdirSync(dirname(logFile), { recursive: true });
      this.out = createWriteStream(logFile, { flags: "a" });
    } else {
      this.out = process.stdout;
    }
  }

  info(requestId, method, url, status, ms) {
    this.lines++;
    this.out.write(
      `${new Date().toISOString()} INFO ${this.svc} seq=${this.lines} request_id=${requestId} ` +
        `"${method} ${url} HTTP/1.1" ${status} ${ms.toFixed(2)}ms\n`,
    );
  }

  close() {
    return new Promise((resolve) => {
      if (this.out === process.stdout) resolve();
      else this.out.end(resolve);
    });
  }
}

/** Calls a downstream service, propagating the request ID; resolves with the parsed JSON body. */
export function call(base, method, path, requestId, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      `${base}${path}`,
      {
        method,
        agent: keepAlive,
        headers: {
          "x-request-id": requestId,
          ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
        },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if ((res.statusCode ?? 500) >= 400) reject(new Error(`${base}${path}: ${res.statusCode} ${text}`));
          else resolve(text ? JSON.parse(text) : null);
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

export function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      try {
        resolve(text ? JSON.parse(text) : {});
      } catch (e) {
        reject(e);
      }
    });
    req.on("error", reject);
  });
}

/**
 * Starts a service. `handle(req, url, requestId)` returns `{status?, body, type?}`.
 * `/__health` and `/__stats` are not logged (they are the benchmark's, not the app's).
 */
export function serve(svc, handle, { generateRequestId = false } = {}) {
  const cfg = settings(svc);
  const log = new RequestLog(svc, cfg.logFile);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/__health") {
      res.end("ok");
      return;
    }
    if (url.pathname === "/__stats") {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ svc, lines: log.lines, pid: process.pid }));
      return;
    }
    const t0 = performance.now();
    let requestId = req.headers["x-request-id"];
    if (typeof requestId !== "string" || requestId === "") {
      requestId = generateRequestId ? randomUUID() : "-";
    }
    let status = 200;
    try {
      const out = await handle(req, url, requestId);
      status = out.status ?? 200;
      res.statusCode = status;
      res.setHeader("content-type", out.type ?? "application/json");
      res.setHeader("x-request-id", requestId);
      res.end(typeof out.body === "string" ? out.body : JSON.stringify(out.body));
    } catch (e) {
      status = 500;
      res.statusCode = 500;
      res.end(String(e?.message ?? e));
    }
    log.info(requestId, req.method, req.url, status, performance.now() - t0);
  });
  server.keepAliveTimeout = 65_000;
  server.listen(cfg.port, cfg.host);
  const stop = () => {
    server.close();
    server.closeAllConnections();
    log.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  return { server, log };
}

/** Upstream base URL from the environment, e.g. UPSTREAM_API=http://127.0.0.1:4001. */
export function upstream(name) {
  const v = process.env[`UPSTREAM_${name.toUpperCase().replace(/-/g, "_")}`];
  if (!v) throw new Error(`UPSTREAM_${name.toUpperCase().replace(/-/g, "_")} is not set`);
  return v.replace(/\/$/, "");
}
