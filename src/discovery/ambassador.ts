import type { Socket } from "node:net";
import { errorMessage } from "../core/errors.js";
import { dnsMetrics } from "./metrics.js";
import { type RelayLogger, RelayServer } from "./relay.js";
import type { ServiceResolver } from "./resolve.js";

/**
 * The Dynamic Ambassador's proxy: a plain TCP forwarder to one service for clients that speak no SOCKS.
 * Each new connection resolves the service again (within the records' TTL), so after a move new connections
 * reach the new instance while open ones drain on the old.
 */
export class Ambassador extends RelayServer {
  constructor(
    private readonly resolver: ServiceResolver,
    /** An SRV name (`_http._tcp.web.ns.zone`) or a service name. */
    private readonly service: string,
    /** Port for a service name without SRV (ignored for SRV names). */
    private readonly targetPort: number,
    log: RelayLogger,
    private readonly connectTimeoutMs = 3000,
  ) {
    super(log, "ambassador");
  }

  protected async handle(client: Socket, id: number): Promise<void> {
    client.pause();
    let upstream: Awaited<ReturnType<ServiceResolver["connect"]>>;
    try {
      upstream = await this.resolver.connect(this.service, this.targetPort, {
        connectTimeoutMs: this.connectTimeoutMs,
      });
    } catch (e) {
      dnsMetrics.proxyConnections.inc({ mode: "ambassador", result: "failed" });
      throw new Error(`cannot reach ${this.service}: ${errorMessage(e)}`);
    }
    this.relay(client, upstream.socket, id, this.service, upstream.endpoint);
    client.resume();
  }
}
