import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { listenOrExplain } from "../core/listen.js";
import { registry } from "./metrics.js";

export interface HealthState {
  /** Alive: the event loop answers. Ready: sources started and sinks accepted their last batch. */
  ready: () => boolean;
}

/** Serves Prometheus `/metrics`, `/healthz` (liveness) and `/readyz` (readiness). */
export async function startObserveServer(
  host: string,
  port: number,
  health: HealthState,
): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (url === "/metrics") {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(body);
        })
        .catch((e: Error) => {
          res.writeHead(500);
          res.end(e.message);
        });
    } else if (url === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
    } else if (url === "/readyz") {
      const ok = health.ready();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" });
      res.end(ok ? "ready\n" : "not ready\n");
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await listenOrExplain(server, host, port, "--metrics-host/--metrics-port");
  server.unref();
  return { server, port: (server.address() as AddressInfo).port };
}
