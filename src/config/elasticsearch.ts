import { readFileSync } from "node:fs";
import type { ClientOptions } from "@elastic/elasticsearch";
import { ERR_INVALID_SETTING } from "../core/errors.js";
import type { SettingDef } from "./settings.js";

/**
 * Elasticsearch settings: the connection (shared by the sink, the ledger and the query commands) and the
 * sink's own. Secrets come from files (`--es-api-key-file`, `--es-password-file`) or from the environment
 * (`IKONTAINER_ES_API_KEY`, `IKONTAINER_ES_PASSWORD`), never from flags (they would show in `ps`), and are
 * never logged.
 */
export const ES_CONNECTION_SETTINGS: SettingDef[] = [
  {
    key: "esApiKeyFile",
    kind: "string",
    arg: "FILE",
    description: "file holding an Elasticsearch API key (base64 id:key); or set IKONTAINER_ES_API_KEY",
  },
  {
    key: "esUsername",
    kind: "string",
    arg: "USER",
    description: "Elasticsearch basic-auth user (password from --es-password-file or IKONTAINER_ES_PASSWORD)",
  },
  {
    key: "esPasswordFile",
    kind: "string",
    arg: "FILE",
    description: "file holding the basic-auth password",
  },
  {
    key: "esCaFile",
    kind: "string",
    arg: "FILE",
    description: "PEM file with the CA that signed the Elasticsearch server certificate",
  },
  {
    key: "esRequestTimeout",
    kind: "duration",
    arg: "DURATION",
    default: 30_000,
    description: "timeout of one Elasticsearch request",
  },
];

export const ES_SINK_SETTINGS: SettingDef[] = [
  ...ES_CONNECTION_SETTINGS,
  {
    key: "esIndexPrefix",
    kind: "string",
    arg: "PREFIX",
    default: "ikontainer-logs",
    description: "daily indices are PREFIX-YYYY.MM.DD (the names fluent-plugin-elasticsearch writes)",
  },
  {
    key: "esFlushBytes",
    kind: "size",
    arg: "SIZE",
    default: 5 * 1024 * 1024,
    description: "largest bulk request body",
  },
  {
    key: "esConcurrency",
    kind: "int",
    arg: "N",
    default: 2,
    description: "bulk requests in flight at once",
  },
  {
    key: "esRetryTimeout",
    kind: "duration",
    arg: "DURATION",
    default: 30_000,
    description: "how long the sink retries a batch (backoff) before handing it back to the pipeline",
  },
  {
    key: "esDeadLetter",
    kind: "string",
    arg: "FILE",
    description:
      "JSON-lines file for documents Elasticsearch rejects, with the reason (default: <state-dir>/dead-letter/elasticsearch.jsonl)",
  },
];

export interface EsConnection {
  node: string;
  auth?: { apiKey: string } | { username: string; password: string };
  ca?: string;
  requestTimeout: number;
}

function readSecret(path: string, setting: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    throw ERR_INVALID_SETTING(
      `invalid ${setting}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code}`,
    );
  }
}

/** Checks the URL and gathers auth and CA from resolved settings (see ES_CONNECTION_SETTINGS) and env. */
export function esConnection(
  url: string,
  s: Readonly<Record<string, unknown>>,
  env: NodeJS.ProcessEnv = process.env,
  setting = "--es",
): EsConnection {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw ERR_INVALID_SETTING(`invalid ${setting}: expected http(s)://HOST:PORT (got "${redactUrl(url)}")`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
    throw ERR_INVALID_SETTING(`invalid ${setting}: expected http(s)://HOST:PORT (got "${redactUrl(url)}")`);
  if (parsed.username || parsed.password)
    throw ERR_INVALID_SETTING(
      `invalid ${setting}: credentials in the URL are not accepted (they would show in ps, logs and metrics); ` +
        "use --es-username with --es-password-file or IKONTAINER_ES_PASSWORD, or --es-api-key-file / IKONTAINER_ES_API_KEY",
    );
  const conn: EsConnection = { node: url, requestTimeout: (s.esRequestTimeout as number) ?? 30_000 };
  const apiKey = s.esApiKeyFile
    ? readSecret(s.esApiKeyFile as string, "--es-api-key-file")
    : env.IKONTAINER_ES_API_KEY;
  if (apiKey) conn.auth = { apiKey };
  else if (s.esUsername) {
    const password = s.esPasswordFile
      ? readSecret(s.esPasswordFile as string, "--es-password-file")
      : env.IKONTAINER_ES_PASSWORD;
    if (password === undefined)
      throw ERR_INVALID_SETTING(
        "invalid --es-username: no password; give --es-password-file or set IKONTAINER_ES_PASSWORD",
      );
    conn.auth = { username: s.esUsername as string, password };
  }
  if (s.esCaFile) conn.ca = readSecret(s.esCaFile as string, "--es-ca-file");
  return conn;
}

/** Options for `new Client()`: the sink and the queries retry themselves, so the client does not. */
export function clientOptions(conn: EsConnection): ClientOptions {
  const o: ClientOptions = { node: conn.node, requestTimeout: conn.requestTimeout, maxRetries: 0 };
  if (conn.auth) o.auth = conn.auth;
  if (conn.ca) o.tls = { ca: conn.ca };
  return o;
}

/**
 * An Elasticsearch client error as one line: HTTP status with the server's error type and reason (a 401
 * used to be logged as `"err":""`), with a hint for authentication and permission failures.
 */
export function describeEsError(e: unknown): string {
  const meta = (e as { meta?: { statusCode?: number; body?: unknown } } | undefined)?.meta;
  if (meta?.statusCode !== undefined) {
    const body = meta.body as { error?: { type?: string; reason?: string } | string } | string | undefined;
    let reason = "";
    if (typeof body === "string") reason = body.slice(0, 300);
    else if (typeof body?.error === "string") reason = body.error;
    else if (body?.error) reason = [body.error.type, body.error.reason].filter(Boolean).join(": ");
    const hint =
      meta.statusCode === 401
        ? " (authentication failed: check --es-username with --es-password-file, or --es-api-key-file)"
        : meta.statusCode === 403
          ? " (the user lacks a privilege on this index)"
          : "";
    return `HTTP ${meta.statusCode}${reason ? ` ${reason.slice(0, 300)}` : ""}${hint}`;
  }
  const m = e instanceof Error ? e.message || e.name : String(e);
  return m || "unknown error";
}

/** The URL without user:password, for ids, logs and messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)[^@/]*@/i, "$1");
}

/** Settings of the query commands (logs, trace, whois): the local store or Elasticsearch. */
export const QUERY_SETTINGS: SettingDef[] = [
  {
    key: "es",
    kind: "string",
    arg: "URL",
    description: "query Elasticsearch at this URL instead of the local store",
  },
  {
    key: "stateDir",
    kind: "list",
    arg: "DIR",
    default: ["./ikontainer-state"],
    description:
      "state dir of the agent: its local store (store/) and CUID ledger (ledger.jsonl); repeatable (one per instance)",
  },
  {
    key: "store",
    kind: "list",
    arg: "DIR",
    description: "folder the file sink wrote to, repeatable (default: <state-dir>/store)",
  },
  {
    key: "esIndexPrefix",
    kind: "string",
    arg: "PREFIX",
    default: "ikontainer-logs",
    description: "log indices are PREFIX-*",
  },
  ...ES_CONNECTION_SETTINGS,
];
