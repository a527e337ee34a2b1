import type { Command } from "commander";
import { QUERY_SETTINGS, redactUrl } from "../config/elasticsearch.js";
import { addSettingOptions, resolveSettings } from "../config/settings.js";
import { UI_SETTINGS } from "../config/ui.js";
import { parseHostPort } from "../config/units.js";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import { UiServer } from "../ui/server.js";
import { openStore } from "./query-common.js";

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export function registerUi(program: Command): void {
  const cmd = program
    .command("ui")
    .description(
      "a read-only web page over the store: search lines by CUID, request ID, svc, IP and time; who held an IP when; a request's path",
    );
  addSettingOptions(cmd, [...UI_SETTINGS, ...QUERY_SETTINGS])
    .addHelpText(
      "after",
      "\nReads the same stores as logs, trace and whois: the local store of one or more state dirs" +
        "\n(--state-dir repeatable: one per container instance), or Elasticsearch with --es." +
        "\nThe page only reads (GET); credentials stay in this process. It listens on loopback unless" +
        "\n--listen says otherwise: there is no login, so do not expose it beyond who may read the logs." +
        "\nStops on Ctrl-C (SIGINT) or SIGTERM.\n\nExamples:\n" +
        "  ikontainer ui --state-dir .demo/cart-1-state --state-dir .demo/cart-2-state\n" +
        "  ikontainer ui --es http://127.0.0.1:9200 --listen 127.0.0.1:8765",
    )
    .action(async (flags: Record<string, unknown>) => {
      const s = resolveSettings(UI_SETTINGS, flags);
      const listen = parseHostPort(s.listen as string, "--listen");
      const pageSize = s.pageSize as number;
      if (pageSize < 1 || pageSize > 1000)
        throw ERR_INVALID_SETTING(`invalid --page-size: expected 1-1000 (got ${pageSize})`);
      const store = openStore(flags);
      const q = resolveSettings(QUERY_SETTINGS, flags);
      const source = q.es ? `Elasticsearch ${redactUrl(q.es as string)}` : "local store";
      const ui = new UiServer({ store, source, kibana: s.kibana as string, pageSize, traceCap: 5000 });
      const addr = await ui.listen(listen.port, listen.host).catch(async (e: NodeJS.ErrnoException) => {
        await store.close();
        throw ERR_INVALID_SETTING(
          `invalid --listen: cannot listen on ${s.listen as string} (${e.code ?? e.message}); pick another HOST:PORT`,
          e,
        );
      });
      const host = addr.host.includes(":") ? `[${addr.host}]` : addr.host;
      process.stdout.write(`ikontainer ui: http://${host}:${addr.port}/ (Ctrl-C stops it)\n`);
      if (!LOOPBACK.test(addr.host))
        process.stderr.write(
          `ikontainer ui: listening on ${addr.host}, not loopback: anyone who can reach it reads the logs\n`,
        );
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      await ui.close();
      await store.close();
    });
}
