import { once } from "node:events";
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dnsMetrics } from "../../src/discovery/metrics.js";
import { DnsRegistrar } from "../../src/discovery/registrar.js";
import type { UpdateTarget } from "../../src/discovery/update.js";
import { type KnotServer, startKnot } from "../fixtures/knot.js";
import { waitForCount } from "../helpers/progress.js";
import { leaseEnd, quiet, registrarHelpers, targetOf } from "./registrar-helpers.js";

let knot: KnotServer;
let target: UpdateTarget;
const dirs: string[] = [];
const { identity, registrar, inst, svc, rev } = registrarHelpers(() => ({ knot, target }));

beforeAll(async () => {
  knot = await startKnot();
  target = targetOf(knot);
});
afterAll(async () => {
  await knot?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("DnsRegistrar against knotd", () => {
  it("publishes instance, service, SRV and reverse records, renews the lease, and removes them on stop", async () => {
    const id = identity();
    const r = registrar(id, { leaseMs: 4000, renewMs: 700 });
    r.start();
    await r.whenRegistered();
    expect(await knot.dig(inst(id), "A")).toEqual(["127.0.0.10"]);
    const txt = (await knot.dig(inst(id), "TXT"))[0]!;
    expect(txt).toContain(`"cuid=${id.cuid}"`);
    expect(txt).toContain('"pod=web-7d9f-abcde"');
    expect(txt).toContain('"node=node-1"');
    expect(txt).toContain(`"started=${id.started}"`);
    expect(txt).toContain('"ports=http:8080/tcp"');
    expect(await knot.dig(svc(id), "A")).toEqual(["127.0.0.10"]);
    expect(await knot.dig(svc(id), "PTR")).toEqual([`${inst(id)}.`]);
    expect(await knot.dig(`_http._tcp.${svc(id)}`, "SRV")).toEqual([`0 10 8080 ${inst(id)}.`]);
    expect(await knot.dig(rev("127.0.0.10"), "PTR")).toEqual([`${inst(id)}.`]);

    const first = leaseEnd(txt);
    await new Promise((res) => r.once("renewed", res));
    expect(leaseEnd((await knot.dig(inst(id), "TXT"))[0])).toBeGreaterThan(first);

    const result = await r.stop();
    expect(result?.removed).toBe(true);
    expect(await knot.dig(inst(id), "ANY")).toEqual([]);
    expect(await knot.dig(svc(id), "A")).toEqual([]);
    expect(await knot.dig(svc(id), "PTR")).toEqual([]);
    expect(await knot.dig(`_http._tcp.${svc(id)}`, "SRV")).toEqual([]);
    expect(await knot.dig(rev("127.0.0.10"), "PTR")).toEqual([]);
  });

  it("a newer instance of the same service reusing the IP keeps every record when the old one deregisters", async () => {
    const old = identity({ ip: "127.0.0.20", svcLabel: "reuse" });
    const newer = identity({ ip: "127.0.0.20", svcLabel: "reuse" });
    const a = registrar(old);
    a.start();
    await a.whenRegistered();
    const b = registrar(newer);
    b.start();
    await b.whenRegistered();
    expect(await knot.dig(rev("127.0.0.20"), "PTR")).toEqual([`${inst(newer)}.`]);

    const result = await a.stop();
    expect(result).toMatchObject({
      removed: true,
      reverseKeptFor: ["127.0.0.20"],
      addressKept: ["127.0.0.20"],
    });
    expect(await knot.dig(inst(old), "ANY")).toEqual([]);
    expect(await knot.dig(inst(newer), "A")).toEqual(["127.0.0.20"]);
    expect(await knot.dig(svc(newer), "A")).toEqual(["127.0.0.20"]);
    expect(await knot.dig(svc(newer), "PTR")).toEqual([`${inst(newer)}.`]);
    expect(await knot.dig(rev("127.0.0.20"), "PTR")).toEqual([`${inst(newer)}.`]);
    expect(await knot.dig(`_http._tcp.${svc(newer)}`, "SRV")).toEqual([`0 10 8080 ${inst(newer)}.`]);
    await b.stop();
    expect(await knot.dig(svc(newer), "A")).toEqual([]);
  });

  it("an instance of another service reusing the IP keeps its PTR; the old service's address goes", async () => {
    const old = identity({ ip: "127.0.0.21", svcLabel: "api" });
    const newer = identity({ ip: "127.0.0.21", svcLabel: "cart" });
    const a = registrar(old);
    a.start();
    await a.whenRegistered();
    const b = registrar(newer);
    b.start();
    await b.whenRegistered();
    await a.stop();
    expect(await knot.dig(svc(old), "A")).toEqual([]);
    expect(await knot.dig(rev("127.0.0.21"), "PTR")).toEqual([`${inst(newer)}.`]);
    expect(await knot.dig(svc(newer), "A")).toEqual(["127.0.0.21"]);
    await b.stop();
  });

  it("the prerequisite holds even when the old instance works from a stale view (another instance appears meanwhile)", async () => {
    const { deregisterInstance, publishedOf, registerInstance } = await import(
      "../../src/discovery/update.js"
    );
    const old = identity({ ip: "127.0.0.22", svcLabel: "race" });
    const newer = identity({ ip: "127.0.0.22", svcLabel: "race" });
    await registerInstance(target, old, { ttl: 1000, leaseMs: 60_000 });
    const attempts: number[] = [];
    // The newer instance registers right after the old one read the service's instance list (only itself):
    // the old one's guarded update must fail its prerequisite and re-read instead of deleting the shared A.
    const result = await deregisterInstance(target, publishedOf(old), async (attempt) => {
      attempts.push(attempt);
      if (attempt === 0) await registerInstance(target, newer, { ttl: 1000, leaseMs: 60_000 });
    });
    expect(attempts).toEqual([0, 1]);
    expect(result).toMatchObject({ removed: true, addressKept: ["127.0.0.22"] });
    expect(await knot.dig(inst(old), "ANY")).toEqual([]);
    expect(await knot.dig(svc(newer), "A")).toEqual(["127.0.0.22"]);
    expect(await knot.dig(svc(newer), "PTR")).toEqual([`${inst(newer)}.`]);
    await deregisterInstance(target, publishedOf(newer));
    expect(await knot.dig(svc(newer), "A")).toEqual([]);
  });

  it("stop() keeps trying to leave DNS while the server does not answer, and leaves once it answers again", async () => {
    // A real knotd frozen with SIGSTOP (a server busy syncing its journal on a loaded node): exchanges time out.
    // Before, the first timed-out exchange ended the deregistration and the records stayed behind.
    const id = identity({ ip: "127.0.0.12", svcLabel: "slowleave" });
    const warnings: string[] = [];
    const failedAttempts = () => warnings.filter((m) => m.includes("deregistration failed; retrying")).length;
    const logger = { ...quiet, warn: (_o?: unknown, m?: unknown) => void warnings.push(String(m)) };
    const r = registrar(id, { target: { ...target, timeoutMs: 400 }, stopTimeoutMs: 15_000, logger });
    r.start();
    await r.whenRegistered();
    process.kill(knot.pid, "SIGSTOP");
    let resumed = false;
    try {
      const stopping = r.stop();
      // knotd answers again only after two exchanges have timed out
      await waitForCount(failedAttempts, 2, { what: "deregistration attempts that timed out" });
      process.kill(knot.pid, "SIGCONT");
      resumed = true;
      const result = await stopping;
      expect(result?.removed).toBe(true);
    } finally {
      if (!resumed) process.kill(knot.pid, "SIGCONT");
    }
    expect(await knot.dig(inst(id), "ANY")).toEqual([]);
    expect(await knot.dig(svc(id), "A")).toEqual([]);
    expect(await knot.dig(rev("127.0.0.12"), "PTR")).toEqual([]);
  });

  it("keeps logging going: with the DNS server down at start it retries with backoff, then registers", async () => {
    const spare = await startKnot();
    await spare.halt();
    const id = identity({ ip: "127.0.0.30", svcLabel: "late" });
    const r = new DnsRegistrar({
      target: targetOf(spare),
      identity: { ...id, zone: spare.zone },
      ttl: 1000,
      leaseMs: 60_000,
      renewMs: 20_000,
      backoffMs: 100,
      maxBackoffMs: 400,
      logger: quiet,
    });
    const retriesBefore = (await dnsMetrics.retries.get()).values[0]?.value ?? 0;
    const delays: number[] = [];
    r.on("retry", (_e, d: number) => delays.push(d));
    // start() never blocks the caller: whatever it returns (even if someone makes it async) settles before the
    // first attempt against the dead server has failed, which needs a network round trip.
    const firstToSettle = await Promise.race([
      Promise.resolve(r.start()).then(() => "start() returned"),
      once(r, "retry").then(() => "the first attempt failed"),
    ]);
    expect(firstToSettle).toBe("start() returned");
    expect(r.state).toBe("registering");
    expect(delays).toEqual([]);
    await waitForCount(() => delays.length, 3, { what: "DNS registration retries" });
    expect(r.state).toBe("registering");
    expect(delays.length).toBeGreaterThanOrEqual(3);
    expect(delays.at(-1)!).toBeGreaterThan(delays[0]!); // backoff grows
    expect((await dnsMetrics.retries.get()).values[0]!.value - retriesBefore).toBe(delays.length);
    await spare.restart();
    await r.whenRegistered();
    expect(await spare.dig(`${id.cuid}.late.shop.${spare.zone}`, "A")).toEqual(["127.0.0.30"]);
    await r.stop();
    expect(await spare.dig(`${id.cuid}.late.shop.${spare.zone}`, "A")).toEqual([]);
    await spare.stop();
  });
});
