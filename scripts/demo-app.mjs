// The demo application: a "web" frontend calling a "cart" service whose instances come and go. Each instance
// writes its own log folder (one agent per instance tails it). Requests are simulated: for each one, web logs a
// JSON access line naming the upstream IP it called, and the cart instance behind that IP logs a text line.
// usage: node demo-app.mjs DIR PHASE REQUESTS
//   PHASE before: web → cart-1 (10.0.0.21) and cart-2 (10.0.0.22); one request to cart-1 fails in the middle
//   PHASE after:  web → cart-3 (10.0.0.21 again: the IP cart-1 had) and cart-2
// Prints one JSON line: the failing request's ID and time (phase before) and the lines written per instance.

import { randomUUID } from "node:crypto";
import { appendFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const [dir, phase, nS = "20"] = process.argv.slice(2);
const n = Number(nS);
const upstreams =
  phase === "before"
    ? [
        ["cart-1", "10.0.0.21"],
        ["cart-2", "10.0.0.22"],
      ]
    : [
        ["cart-3", "10.0.0.21"],
        ["cart-2", "10.0.0.22"],
      ];
for (const name of ["web", ...upstreams.map((u) => u[0])]) mkdirSync(join(dir, name), { recursive: true });
const counts = {};
const write = (name, line) => {
  appendFileSync(join(dir, name, "app.log"), `${line}\n`);
  counts[name] = (counts[name] ?? 0) + 1;
};
const failAt = phase === "before" ? Math.floor(n / 2) & ~1 : -1; // an even index: cart-1's turn
let failing;
let i = 0;
const timer = setInterval(() => {
  if (i >= n) {
    clearInterval(timer);
    process.stdout.write(`${JSON.stringify({ phase, failing, counts })}\n`);
    return;
  }
  const [name, ip] = upstreams[i % 2];
  const id = randomUUID();
  const t = new Date().toISOString();
  const fails = i === failAt;
  if (fails) {
    failing = { id, at: t, ip, instance: name };
    write(name, `${t} INFO GET /cart/42 x-request-id=${id}`);
    write(name, `${t} ERROR payment backend timed out after 2000ms x-request-id=${id}`);
  } else {
    write(name, `${t} INFO GET /cart/${i} items=${1 + (i % 4)} x-request-id=${id} took=${3 + (i % 5)}ms`);
  }
  write(
    "web",
    JSON.stringify({
      time: t,
      level: fails ? "error" : "info",
      msg: fails ? "GET /checkout upstream error" : "GET /checkout",
      "x-request-id": id,
      upstream: `${ip}:8080`,
      status: fails ? 502 : 200,
    }),
  );
  i++;
}, 40);
