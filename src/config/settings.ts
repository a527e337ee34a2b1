import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { type Command, Option } from "commander";
import { ERR_CONFIG_FILE, ERR_INVALID_SETTING } from "../core/errors.js";
import { parseDuration, parseSize } from "./units.js";

/**
 * One definition per setting: its flag, its environment variable, its config-file key, its type and default.
 * Flags win over the environment, the environment over the YAML file (`--config`), the file over defaults.
 */
export type SettingKind = "string" | "list" | "int" | "port" | "size" | "duration" | "bool" | "enum";

export interface SettingDef {
  /** camelCase key in the resolved config; the flag is its kebab-case form, the env var `IKONTAINER_<SNAKE>`. */
  key: string;
  kind: SettingKind;
  description: string;
  default?: unknown;
  choices?: readonly string[];
  /** Placeholder shown in --help, e.g. DIR. */
  arg?: string;
  short?: string;
}

export const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
export const envName = (key: string): string => `IKONTAINER_${kebab(key).replace(/-/g, "_").toUpperCase()}`;

const TRUE = ["true", "1", "yes"];
const FALSE = ["false", "0", "no"];

/** A whole number in [min, max] from a number or a decimal string, else undefined. */
function wholeNumber(raw: unknown, min: number, max: number): number | undefined {
  const n =
    typeof raw === "number" ? raw : typeof raw === "string" && /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
}

function coerce(def: SettingDef, raw: unknown, where: string): unknown {
  const setting = `${where}`;
  const fail = (expected: string): never => {
    throw ERR_INVALID_SETTING(`invalid ${setting}: expected ${expected} (got ${JSON.stringify(raw)})`);
  };
  switch (def.kind) {
    case "string":
      return typeof raw === "string" || typeof raw === "number" ? String(raw) : fail("a string");
    case "list": {
      const items = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(",") : fail("a list");
      return items.map((x) => String(x).trim()).filter((x) => x !== "");
    }
    case "int":
      return wholeNumber(raw, 0, Number.MAX_SAFE_INTEGER) ?? fail("a non-negative integer");
    case "port":
      return wholeNumber(raw, 0, 65535) ?? fail("a port number 0-65535");
    case "size":
      return parseSize(raw as string, setting);
    case "duration":
      return parseDuration(raw as string, setting);
    case "bool":
      if (typeof raw === "boolean") return raw;
      if (TRUE.includes(String(raw))) return true;
      return FALSE.includes(String(raw)) ? false : fail("true or false");
    case "enum":
      return def.choices?.includes(String(raw)) ? String(raw) : fail(`one of ${def.choices?.join(", ")}`);
  }
}

/** Registers every setting as a flag on a commander command (no defaults here: defaults are applied last). */
export function addSettingOptions(cmd: Command, defs: readonly SettingDef[]): Command {
  for (const def of defs) {
    const flagName = `--${kebab(def.key)}`;
    const flags = `${def.short ? `-${def.short}, ` : ""}${flagName}${def.kind === "bool" ? "" : ` <${def.arg ?? "value"}>`}`;
    const dflt =
      def.default === undefined
        ? ""
        : ` (default: ${Array.isArray(def.default) ? def.default.join(",") : String(def.default)})`;
    const opt = new Option(flags, `${def.description}${dflt} [env ${envName(def.key)}]`);
    if (def.kind === "list") opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    if (def.kind === "enum" && def.choices) opt.choices(def.choices as string[]);
    cmd.addOption(opt);
    // After the positive flag: a `--no-` flag registered first would make commander default the value to true.
    if (def.kind === "bool") cmd.addOption(new Option(`--no-${kebab(def.key)}`).hideHelp());
  }
  cmd.option("--config <file>", "YAML config file with the same settings (kebab-case or camelCase keys)");
  return cmd;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw ERR_CONFIG_FILE(`cannot read config file ${path}: ${(e as Error).message}`, e);
  }
  let doc: unknown;
  try {
    // yaml loads only when a config file is given (start-up time).
    const { parse } = createRequire(import.meta.url)("yaml") as typeof import("yaml");
    doc = parse(text);
  } catch (e) {
    throw ERR_CONFIG_FILE(`config file ${path} is not valid YAML: ${(e as Error).message.split("\n")[0]}`, e);
  }
  if (doc == null) return {};
  if (typeof doc !== "object" || Array.isArray(doc))
    throw ERR_CONFIG_FILE(`config file ${path} must be a YAML mapping`);
  return doc as Record<string, unknown>;
}

/** Merges flags, environment, config file and defaults; every value is checked and typed. */
export function resolveSettings(
  defs: readonly SettingDef[],
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, unknown> {
  const configPath = (flags.config as string | undefined) ?? env.IKONTAINER_CONFIG;
  const file = configPath ? readConfigFile(configPath) : {};
  const byKey = new Map(defs.map((d) => [d.key, d]));
  const fileValues: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(file)) {
    const key = k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (!byKey.has(key)) throw ERR_CONFIG_FILE(`unknown setting "${k}" in config file ${configPath}`);
    fileValues[key] = v;
  }
  const out: Record<string, unknown> = {};
  for (const def of defs) {
    const e = env[envName(def.key)];
    if (flags[def.key] !== undefined) out[def.key] = coerce(def, flags[def.key], `--${kebab(def.key)}`);
    else if (e !== undefined && e !== "") out[def.key] = coerce(def, e, envName(def.key));
    else if (fileValues[def.key] !== undefined)
      out[def.key] = coerce(def, fileValues[def.key], `${kebab(def.key)} in ${configPath}`);
    else out[def.key] = def.default;
  }
  return out;
}
