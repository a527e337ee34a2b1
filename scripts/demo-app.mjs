// The demo application: a "web" frontend calling a "cart" service whose instances come and go. Each instance
// writes its own log folder (one agent per instance tails it). Requests are simulated: web logs the request
// coming in, the cart instance behind the upstream IP logs its handling, then web logs the response naming that
// upstream IP (a few ms apart, so the lines of one request are in time order across the instances).
// usage: node demo-app.mjs DIR PHASE REQUESTS
//   PHASE before: web → cart-1 (10.0.0.21) and cart-2 (10.0.0.22); one request to cart-1 fails in the middle
//   PHASE after:  web → cart-3 (10.0.0.21 again: the IP cart-1 had) and cart-2
// DEMO_NET=10.7.7 changes the network (the tests use one of their own).
// Prints one JSON line: the failing request's ID and time (phase before) and the lines written per instance.

import { randomUUID } from "node:crypto";
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const [dir, phase, nS = "20"] = process.argv.slice(2);
const n = Number(nS);
const net = process.env.DEMO_NET ?? "10.0.0";
const upstreams =
  phase === "before"
    ? [
        ["cart-1", `${net}.21`],
        ["cart-2", `${net}.22`],
      ]
    : [
        ["cart-3", `${net}.21`],
        ["cart-2", `${net}.22`],
      ];
for (const name of ["web", ...upstreams.map((u) => u[0])]) mkdirSync(join(dir, name), { recursive: true });
const counts = {};
const write = (name, line) => {
  appendFileSync(join(dir, name, "app.log"), `${line}\n`);
  counts[name] = (counts[name] ?? 0) + 1;
};
const web = (fields) => write("web", JSON.stringify({ time: new Date().toISOString(), ...fields }));
// the agents stamp lines when they read them (within ~25 ms): this gap keeps the hops of a request in order
const HOP_GAP_MS = 60;
const failAt = phase === "before" ? Math.floor(n / 2) & ~1 : -1; // an even index: cart-1's turn
let failing;
for (let i = 0; i < n; i++) {
  const [name, ip] = upstreams[i % 2];
  const id = randomUUID();
  const fails = i === failAt;
  web({ level: "info", msg: "GET /checkout", "x-request-id": id });
  await sleep(HOP_GAP_MS);
  const t = new Date().toISOString();
  if (fails) {
    failing = { id, at: t, ip, instance: name };
    write(name, `${t} INFO GET /cart/42 x-request-id=${id}`);
    write(name, `${t} ERROR payment backend timed out after 2000ms x-request-id=${id}`);
  } else {
    write(name, `${t} INFO GET /cart/${i} items=${1 + (i % 4)} x-request-id=${id} took=${3 + (i % 5)}ms`);
  }
  await sleep(HOP_GAP_MS);
  web({
    level: fails ? "error" : "info",
    msg: fails ? "GET /checkout upstream error" : "GET /checkout 200",
    "x-request-id": id,
    upstream: `${ip}:8080`,
    status: fails ? 502 : 200,
  });
}
process.stdout.write(`${JSON.stringify({ phase, failing, counts })}\n`);
