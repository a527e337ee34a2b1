import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Command } from "commander";
import { redactUrl } from "../config/elasticsearch.js";
import { addSettingOptions, resolveSettings, type SettingDef } from "../config/settings.js";
import { ERR_DASHBOARDS_IMPORT, ERR_INVALID_SETTING } from "../core/errors.js";

/** The Kibana 8 saved objects shipped in dashboards/ (data view, saved search, timeline, dashboard). */
export const DASHBOARDS_FILE = new URL("../../dashboards/ikontainer.ndjson", import.meta.url);

const KIBANA_SETTINGS: SettingDef[] = [
  { key: "kibana", kind: "string", arg: "URL", description: "Kibana base URL, e.g. http://127.0.0.1:5601" },
  {
    key: "kibanaSpace",
    kind: "string",
    arg: "ID",
    description: "Kibana space to import into (default: the default space)",
  },
  {
    key: "kibanaApiKeyFile",
    kind: "string",
    arg: "FILE",
    description: "file holding a Kibana/Elasticsearch API key; or set IKONTAINER_KIBANA_API_KEY",
  },
  {
    key: "kibanaUsername",
    kind: "string",
    arg: "USER",
    description: "basic-auth user (password from --kibana-password-file or IKONTAINER_KIBANA_PASSWORD)",
  },
  {
    key: "kibanaPasswordFile",
    kind: "string",
    arg: "FILE",
    description: "file holding the basic-auth password",
  },
  {
    key: "kibanaCaFile",
    kind: "string",
    arg: "FILE",
    description: "PEM file with the CA of Kibana's certificate",
  },
];

const secret = (path: string, setting: string): string => {
  try {
    return readFileSync(path, "utf8").trim();
  } catch (e) {
    throw ERR_INVALID_SETTING(
      `invalid ${setting}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code}`,
    );
  }
};

interface ImportResult {
  success?: boolean;
  successCount?: number;
  errors?: Array<{ id: string; type: string; error?: { type?: string; message?: string } }>;
  message?: string;
}

/** POST /api/saved_objects/_import?overwrite=true as multipart/form-data with the NDJSON as `file`. */
export async function importDashboards(
  s: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ImportResult> {
  let base: URL;
  try {
    base = new URL(String(s.kibana));
  } catch {
    throw ERR_INVALID_SETTING(
      `invalid --kibana: expected http(s)://HOST:PORT (got "${redactUrl(String(s.kibana))}")`,
    );
  }
  const space = s.kibanaSpace ? `/s/${encodeURIComponent(String(s.kibanaSpace))}` : "";
  const url = new URL(
    `${base.pathname.replace(/\/$/, "")}${space}/api/saved_objects/_import?overwrite=true`,
    base,
  );
  const ndjson = readFileSync(DASHBOARDS_FILE);
  const boundary = `----ikontainer${randomBytes(12).toString("hex")}`;
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="ikontainer.ndjson"\r\n` +
        "Content-Type: application/ndjson\r\n\r\n",
    ),
    ndjson,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const headers: Record<string, string | number> = {
    "kbn-xsrf": "ikontainer",
    "content-type": `multipart/form-data; boundary=${boundary}`,
    "content-length": body.length,
  };
  const apiKey = s.kibanaApiKeyFile
    ? secret(String(s.kibanaApiKeyFile), "--kibana-api-key-file")
    : env.IKONTAINER_KIBANA_API_KEY;
  if (apiKey) headers.authorization = `ApiKey ${apiKey}`;
  else if (s.kibanaUsername || base.username) {
    const user = s.kibanaUsername ? String(s.kibanaUsername) : decodeURIComponent(base.username);
    const pass = s.kibanaPasswordFile
      ? secret(String(s.kibanaPasswordFile), "--kibana-password-file")
      : (env.IKONTAINER_KIBANA_PASSWORD ?? decodeURIComponent(base.password));
    headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString("base64")}`;
  }
  url.username = "";
  url.password = "";
  const ca = s.kibanaCaFile ? secret(String(s.kibanaCaFile), "--kibana-ca-file") : undefined;
  const where = redactUrl(base.toString());
  const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(
      url,
      { method: "POST", headers, ...(ca ? { ca } : {}), timeout: 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out after 30 s")));
    req.on("error", (e) => reject(ERR_DASHBOARDS_IMPORT(`cannot reach Kibana at ${where}: ${e.message}`, e)));
    req.end(body);
  });
  let result: ImportResult;
  try {
    result = JSON.parse(text) as ImportResult;
  } catch {
    throw ERR_DASHBOARDS_IMPORT(
      `Kibana at ${where} answered HTTP ${status} without JSON: ${text.slice(0, 200)}`,
    );
  }
  if (status < 200 || status >= 300)
    throw ERR_DASHBOARDS_IMPORT(
      `Kibana at ${where} refused the import: HTTP ${status} ${result.message ?? text.slice(0, 200)}`,
    );
  if (!result.success) {
    const errs = (result.errors ?? []).map((e) =>
      `${e.type} ${e.id}: ${e.error?.type ?? ""} ${e.error?.message ?? ""}`.trim(),
    );
    throw ERR_DASHBOARDS_IMPORT(
      `Kibana at ${where} did not import every object: ${errs.join("; ") || text.slice(0, 200)}`,
    );
  }
  return result;
}

export function registerDashboards(program: Command): void {
  const dash = program
    .command("dashboards")
    .description(
      "Kibana 8 saved objects: data view ikontainer-logs-*, a saved search and a CUID / request-ID dashboard",
    );
  const imp = dash
    .command("import")
    .description("import the dashboards into Kibana (overwrites earlier versions of the same objects)")
    .addHelpText(
      "after",
      "\nExample:\n  ikontainer dashboards import --kibana http://127.0.0.1:5601\n" +
        "  IKONTAINER_KIBANA_PASSWORD=… ikontainer dashboards import --kibana https://kibana:5601 --kibana-username elastic --kibana-ca-file ca.pem",
    );
  addSettingOptions(imp, KIBANA_SETTINGS).action(async (flags: Record<string, unknown>) => {
    const s = resolveSettings(KIBANA_SETTINGS, flags);
    if (!s.kibana)
      throw ERR_INVALID_SETTING("invalid --kibana: give the Kibana URL, e.g. --kibana http://127.0.0.1:5601");
    const r = await importDashboards(s);
    process.stdout.write(
      `imported ${r.successCount ?? 0} saved objects into Kibana at ${redactUrl(String(s.kibana))}\n`,
    );
  });
  dash
    .command("print")
    .description(
      "write the saved objects (NDJSON) to stdout, for Kibana's Stack Management → Saved objects → Import",
    )
    .action(() => {
      process.stdout.write(readFileSync(DASHBOARDS_FILE));
    });
}
