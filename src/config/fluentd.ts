import type { SettingDef } from "./settings.js";

/**
 * Settings of `--output fluentd://HOST:PORT` sinks. Each can also be given per output in the URL's query,
 * without the `fluentd-` prefix: `fluentd://agg:24224?tls=true&ca=/etc/ikontainer/ca.pem`.
 * Secrets never go on the command line: the shared key and password come from files or from the
 * environment (IKONTAINER_FLUENTD_SHARED_KEY, IKONTAINER_FLUENTD_PASSWORD), and are never logged.
 */
export const FLUENTD_SETTINGS: SettingDef[] = [
  {
    key: "fluentdAckTimeout",
    kind: "duration",
    arg: "DURATION",
    default: 30_000,
    description: "fluentd: a batch not acknowledged within this time is sent again",
  },
  {
    key: "fluentdConnectTimeout",
    kind: "duration",
    arg: "DURATION",
    default: 10_000,
    description: "fluentd: how long a batch waits for a connection before the attempt fails and is retried",
  },
  {
    key: "fluentdReconnectMax",
    kind: "duration",
    arg: "DURATION",
    default: 30_000,
    description: "fluentd: longest wait between reconnection attempts (exponential backoff from 100ms)",
  },
  {
    key: "fluentdTagPrefix",
    kind: "string",
    arg: "PREFIX",
    default: "ikontainer",
    description: "fluentd: tag is PREFIX.<svc>",
  },
  { key: "fluentdTls", kind: "bool", default: false, description: "fluentd: connect with TLS" },
  {
    key: "fluentdCa",
    kind: "string",
    arg: "FILE",
    description: "fluentd: CA bundle (PEM) that signed the receiver's certificate (implies TLS)",
  },
  {
    key: "fluentdCert",
    kind: "string",
    arg: "FILE",
    description: "fluentd: client certificate (PEM) for mutual TLS",
  },
  {
    key: "fluentdKey",
    kind: "string",
    arg: "FILE",
    description: "fluentd: private key (PEM) of --fluentd-cert",
  },
  {
    key: "fluentdServername",
    kind: "string",
    arg: "NAME",
    description: "fluentd: TLS server name to verify (default: the host)",
  },
  {
    key: "fluentdTlsInsecure",
    kind: "bool",
    default: false,
    description: "fluentd: do not verify the receiver's certificate",
  },
  {
    key: "fluentdSharedKeyFile",
    kind: "string",
    arg: "FILE",
    description: "fluentd: file holding the <security> shared_key (or set IKONTAINER_FLUENTD_SHARED_KEY)",
  },
  {
    key: "fluentdClientHostname",
    kind: "string",
    arg: "NAME",
    description: "fluentd: self_hostname sent in the handshake (default: hostname)",
  },
  {
    key: "fluentdUsername",
    kind: "string",
    arg: "USER",
    description: "fluentd: user for <security> user_auth",
  },
  {
    key: "fluentdPasswordFile",
    kind: "string",
    arg: "FILE",
    description: "fluentd: file holding the user_auth password (or set IKONTAINER_FLUENTD_PASSWORD)",
  },
];

export interface FluentdSettings {
  fluentdAckTimeout: number;
  fluentdConnectTimeout: number;
  fluentdReconnectMax: number;
  fluentdTagPrefix: string;
  fluentdTls: boolean;
  fluentdCa?: string;
  fluentdCert?: string;
  fluentdKey?: string;
  fluentdServername?: string;
  fluentdTlsInsecure: boolean;
  fluentdSharedKeyFile?: string;
  fluentdClientHostname?: string;
  fluentdUsername?: string;
  fluentdPasswordFile?: string;
}
