import { registry } from "../observe/metrics.js";
import { Counter, Gauge } from "../observe/prom.js";

/** DNS registration and discovery metrics, on the agent's one registry (served at /metrics). */
export const dnsMetrics = {
  updates: new Counter({
    name: "ikontainer_dns_updates_total",
    help: "Signed DNS updates sent, by operation (register, renew, deregister, gc) and result (ok, or the RCODE / TSIG error / unreachable)",
    labelNames: ["op", "result"],
    registers: [registry],
  }),
  retries: new Counter({
    name: "ikontainer_dns_register_retries_total",
    help: "Registration attempts that failed and will be retried with backoff",
    registers: [registry],
  }),
  registered: new Gauge({
    name: "ikontainer_dns_registered",
    help: "1 while this instance's records are published and its lease is current",
    registers: [registry],
  }),
  proxyConnections: new Counter({
    name: "ikontainer_proxy_connections_total",
    help: "Connections handled by the SOCKS5 proxy or ambassador, by result",
    labelNames: ["mode", "result"],
    registers: [registry],
  }),
  gcRemoved: new Counter({
    name: "ikontainer_dns_gc_removed_total",
    help: "Instances whose lease had passed and whose records `ddns gc` removed",
    registers: [registry],
  }),
};
