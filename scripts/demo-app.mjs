// The demo application: two "containers" (web and api) that log every request with its x-request-id,
// web as JSON lines, api as text; api rotates its log by rename halfway through.
// usage: node demo-app.mjs DIR REQUESTS

import { randomUUID } from "node:crypto";
import { appendFileSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";

const [dir, nS = "200"] = process.argv.slice(2);
const n = Number(nS);
mkdirSync(join(dir, "web"), { recursive: true });
mkdirSync(join(dir, "api"), { recursive: true });
const ids = [];
let i = 0;
const timer = setInterval(() => {
  for (let k = 0; k < 10 && i < n; k++, i++) {
    const id = randomUUID();
    ids.push(id);
    const t = new Date().toISOString();
    appendFileSync(
      join(dir, "web", "access.log"),
      `${JSON.stringify({ time: t, level: "info", msg: "GET /search?q=containers", "x-request-id": id, status: 200 })}\n`,
    );
    appendFileSync(
      join(dir, "api", "api.log"),
      `${t} INFO search q=containers hits=${i % 17} x-request-id=${id} took=${3 + (i % 5)}ms\n`,
    );
    if (i === Math.floor(n / 2)) renameSync(join(dir, "api", "api.log"), join(dir, "api", "api.log.1"));
  }
  if (i >= n) {
    clearInterval(timer);
    process.stdout.write(`${JSON.stringify({ requests: n, sample: ids[Math.floor(n / 3)] })}\n`);
  }
}, 20);
