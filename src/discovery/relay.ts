import { createServer, type Server, type Socket } from "node:net";
import { errorMessage } from "../core/errors.js";
import { listenOrExplain } from "../core/listen.js";
import type { Logger } from "../observe/logger.js";
import { dnsMetrics } from "./metrics.js";
import type { Endpoint } from "./resolve.js";

export type RelayLogger = Pick<Logger, "info" | "warn" | "debug">;

/**
 * A TCP listener whose connections are relayed to a chosen upstream; shared by the SOCKS5 proxy and the
 * ambassador. close() stops accepting at once and lets open connections drain (up to a deadline).
 */
export abstract class RelayServer {
  protected readonly server: Server;
  private readonly open = new Set<Socket>();
  private nextId = 1;

  constructor(
    protected readonly log: RelayLogger,
    protected readonly mode: "socks5" | "ambassador",
  ) {
    this.server = createServer({ pauseOnConnect: false }, (client) => {
      const id = this.nextId++;
      this.open.add(client);
      client.once("close", () => this.open.delete(client));
      client.on("error", () => client.destroy());
      this.handle(client, id).catch((e: unknown) => {
        this.log.warn({ conn: id, err: errorMessage(e) }, `${this.mode}: connection failed`);
        client.destroy();
      });
    });
  }

  protected abstract handle(client: Socket, id: number): Promise<void>;

  async listen(host: string, port: number, flag = "--listen"): Promise<{ host: string; port: number }> {
    await listenOrExplain(this.server, host, port, flag);
    const a = this.server.address() as { address: string; port: number };
    return { host: a.address, port: a.port };
  }

  get connections(): number {
    return this.open.size;
  }

  /** Stops accepting; open connections may finish within drainMs, then they are cut. */
  async close(drainMs = 10_000): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    const deadline = Date.now() + drainMs;
    while (this.open.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of this.open) s.destroy();
    await closed;
  }

  /** Pipes both ways; logs the connection with the chosen instance's CUID, and its byte counts when it ends. */
  protected relay(
    client: Socket,
    upstream: Socket,
    id: number,
    target: string,
    ep: Endpoint,
    head?: Buffer,
  ): void {
    const started = Date.now();
    this.open.add(upstream);
    upstream.once("close", () => this.open.delete(upstream));
    dnsMetrics.proxyConnections.inc({ mode: this.mode, result: "ok" });
    this.log.info(
      {
        conn: id,
        client: `${client.remoteAddress}:${client.remotePort}`,
        target,
        upstream: `${ep.host}:${ep.port}`,
        peer_CUID: ep.cuid,
        instance: ep.instance,
        pod: ep.pod,
        via: ep.via,
      },
      `${this.mode}: connected${ep.cuid ? ` to instance ${ep.cuid}` : ""}`,
    );
    if (head && head.length > 0) upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
    };
    upstream.on("error", done);
    client.on("error", done);
    let logged = false;
    const end = () => {
      if (logged) return;
      logged = true;
      this.log.debug(
        {
          conn: id,
          peer_CUID: ep.cuid,
          up: client.bytesRead,
          down: client.bytesWritten,
          ms: Date.now() - started,
        },
        `${this.mode}: closed`,
      );
    };
    client.once("close", () => {
      end();
      upstream.end();
    });
    upstream.once("close", () => {
      end();
      client.end();
    });
  }
}
