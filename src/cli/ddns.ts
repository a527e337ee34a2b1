import type { Command } from "commander";
import { AGENT_SETTINGS, svcFromEnv } from "../config/agent.js";
import { DDNS_SETTINGS, ddnsConfigFrom } from "../config/ddns.js";
import { addSettingOptions, resolveSettings, type SettingDef } from "../config/settings.js";
import { loadOrCreateCuid } from "../core/cuid.js";
import { ERR_INVALID_SETTING, errorMessage } from "../core/errors.js";
import type { UpdateTarget } from "../discovery/update.js";
import { createLogger } from "../observe/logger.js";
import { AGENT_START_HOOKS, EXTRA_AGENT_SETTINGS } from "./agent-common.js";

// `run` and `exec` publish the instance in DNS when --ddns-server is set: our settings join their option
// tables, and a start hook starts the registrar once the pipeline runs and deregisters at clean stop
// (SIGTERM, or the child's exit in exec mode).
EXTRA_AGENT_SETTINGS.push(...DDNS_SETTINGS);
AGENT_START_HOOKS.push(async (parts, mode) => {
  if (parts.settings.ddnsServer === undefined) return; // nothing to publish: do not even load the DNS code
  const { createRegistrar } = await import("../discovery/registrar.js");
  const registrar = createRegistrar(parts.settings, {
    cuid: parts.cuid.cuid,
    svc: parts.config.svc,
    logger: parts.log,
  });
  if (!registrar) return;
  registrar.start();
  let stopping: Promise<unknown> | undefined;
  const stop = () => {
    stopping ??= registrar.stop();
    return stopping;
  };
  if (mode === "exec") {
    // Stop advertising the moment SIGTERM arrives, while the child still drains: new connections go to other
    // instances instead of one that is shutting down (exec forwards the signal to the child itself).
    const onTerm = () => {
      // Decided now, not after deregistering (by then exec may have removed its own handler while exiting).
      const handledElsewhere = process.listenerCount("SIGTERM") > 0;
      void stop().then(() => {
        // Nobody else handled SIGTERM (it came before the child started): keep its default meaning.
        if (!handledElsewhere) process.exit(143);
      });
    };
    process.once("SIGTERM", onTerm);
    // The child hears SIGTERM only after we left DNS and answers cached before that expired: an app that stops
    // accepting (or closes idle connections) at SIGTERM would otherwise reset connections still routed to it.
    const delay =
      (parts.settings.stopDelay as number | undefined) ?? (parts.settings.dnsTtl as number) + 1000;
    parts.beforeChildStop.push(async () => {
      // Nothing was removed (never published, or leaving failed within its 10 s budget): caches have nothing to
      // forget, so the child is not kept waiting (a dead DNS server must not eat the pod's grace period).
      const left = await stop();
      if (delay <= 0 || left === undefined) return;
      parts.log.info({ delayMs: delay }, "left DNS; passing SIGTERM to the child after the delay");
      await new Promise((r) => setTimeout(r, delay).unref()); // the child's own exit must not wait for it
    });
    parts.onStop.push(async () => {
      process.off("SIGTERM", onTerm);
      await stop();
    });
  } else {
    // Leave DNS when the stop begins, not after the drain: a drain that runs into the stop deadline (a sink that
    // does not answer) must not leave this instance's records behind, pointing at an IP the next pod may get.
    // (run's stop deadline waits for this promise: it is bounded by the registrar's own budget)
    parts.onStopping.push(() => stop());
    parts.onStop.push(async () => {
      await stop();
    });
  }
});

const pick = (keys: string[]): SettingDef[] => AGENT_SETTINGS.filter((d) => keys.includes(d.key));

const GC_SETTINGS: SettingDef[] = [
  ...DDNS_SETTINGS.filter((d) =>
    ["ddnsServer", "zone", "reverseZone", "tsig", "tsigFile", "dnsTimeout"].includes(d.key),
  ),
  {
    key: "grace",
    kind: "duration",
    arg: "DURATION",
    default: 0,
    description: "remove an instance only this long after its lease passed",
  },
  {
    key: "loop",
    kind: "duration",
    arg: "DURATION",
    description: "run again every DURATION until SIGTERM (default: once)",
  },
  { key: "dryRun", kind: "bool", description: "list what would be removed, remove nothing" },
];

function targetFrom(settings: Record<string, unknown>): UpdateTarget {
  const cfg = ddnsConfigFrom(settings);
  if (!cfg) throw ERR_INVALID_SETTING("invalid --ddns-server: give the DNS server to update (HOST:PORT)");
  return {
    server: cfg.server,
    key: cfg.key,
    zone: cfg.zone,
    reverseZone: cfg.reverseZone,
    timeoutMs: cfg.timeoutMs,
  };
}

export function registerDdns(program: Command): void {
  const ddns = program
    .command("ddns")
    .description("publish instances in DNS (RFC 2136 + TSIG) and clean up stale ones");

  const reg = ddns
    .command("register")
    .description(
      "publish this container instance (CUID from --state-dir) in DNS, renew its lease, and remove its records on SIGTERM/SIGINT",
    )
    .option("--once", "register, print the instance name and exit (the lease expires unless renewed)")
    .addHelpText(
      "after",
      "\nExample:\n  ikontainer ddns register --svc web --state-dir /run/ikontainer --ddns-server 10.0.0.53:53 --zone svc.example.org \\\n" +
        "    --reverse-zone 10.in-addr.arpa --tsig-file /etc/ikontainer/tsig.key --port http:8080/tcp",
    );
  addSettingOptions(reg, [...pick(["stateDir", "svc", "cuidVersion", "logLevel"]), ...DDNS_SETTINGS]).action(
    async (flags: Record<string, unknown>) => {
      const defs = [...pick(["stateDir", "svc", "cuidVersion", "logLevel"]), ...DDNS_SETTINGS];
      const s = resolveSettings(defs, flags);
      const svc = (s.svc as string | undefined) ?? svcFromEnv(process.env);
      if (!svc) throw ERR_INVALID_SETTING("invalid --svc: give the service name (or IKONTAINER_SERVICE)");
      if (s.ddnsServer === undefined)
        throw ERR_INVALID_SETTING("invalid --ddns-server: give the DNS server to update (HOST:PORT)");
      const log = createLogger(s.logLevel as string);
      const cuid = loadOrCreateCuid(s.stateDir as string, Number(s.cuidVersion) as 4 | 7);
      const { createRegistrar } = await import("../discovery/registrar.js");
      const registrar = createRegistrar(s, { cuid: cuid.cuid, svc, logger: log })!;
      if (flags.once) {
        await registrar.registerOnce();
        process.stdout.write(`${registrar.name}\n`);
        return;
      }
      registrar.start();
      registrar.once("registered", () => process.stdout.write(`${registrar.name}\n`));
      // The registrar's timers do not hold the process open (they must not keep `run` alive): this does.
      const keepAlive = setInterval(() => {}, 3_600_000);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ signal }, "stopping: deregistering");
          void registrar.stop().finally(() => {
            clearInterval(keepAlive);
            resolve();
          });
        };
        process.once("SIGTERM", () => stop("SIGTERM"));
        process.once("SIGINT", () => stop("SIGINT"));
      });
    },
  );

  const gc = ddns
    .command("gc")
    .description(
      "remove instances whose lease (TXT expires=) has passed: they died without deregistering (kill -9, node loss)",
    )
    .addHelpText(
      "after",
      "\nReads the zone by a signed transfer (the TSIG key needs transfer rights) and removes each stale instance with\n" +
        "the same prerequisites as a deregistration: a newer instance that reuses the address keeps its records.\n" +
        "Example:\n  ikontainer ddns gc --ddns-server 10.0.0.53 --zone svc.example.org --reverse-zone 10.in-addr.arpa --tsig-file key --loop 1m",
    );
  addSettingOptions(gc, [...GC_SETTINGS, ...pick(["logLevel"])]).action(
    async (flags: Record<string, unknown>) => {
      const s = resolveSettings([...GC_SETTINGS, ...pick(["logLevel"])], flags);
      const target = targetFrom({ ...s, lease: 300_000, dnsTtl: 5000 });
      const log = createLogger(s.logLevel as string);
      const { collectGarbage } = await import("../discovery/gc.js");
      const once = async () => {
        const outcomes = await collectGarbage(target, {
          graceMs: s.grace as number,
          dryRun: s.dryRun === true,
        });
        for (const o of outcomes) {
          const what =
            o.result === "dry-run"
              ? "would remove"
              : o.result.removed
                ? "removed"
                : "kept (renewed or already gone)";
          process.stdout.write(`${what} ${o.instance} (cuid ${o.cuid}, lease expired ${o.expires})\n`);
        }
        return outcomes;
      };
      if (s.loop === undefined) {
        await once();
        return;
      }
      let stopping = false;
      let timer: NodeJS.Timeout | undefined;
      const wake: { fn?: () => void } = {};
      const stop = () => {
        stopping = true;
        clearTimeout(timer);
        wake.fn?.();
      };
      process.once("SIGTERM", stop);
      process.once("SIGINT", stop);
      while (!stopping) {
        try {
          await once();
        } catch (e) {
          log.error({ err: errorMessage(e) }, "ddns gc pass failed; trying again next round");
        }
        if (stopping) break;
        await new Promise<void>((r) => {
          wake.fn = r;
          timer = setTimeout(r, s.loop as number); // holds the process open between rounds
        });
      }
    },
  );
}
