import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { removeDir, runCli, tempDir } from "../helpers/agent.js";

/**
 * `exec` must not hand the agent's secrets to the application: a child that prints its whole environment must
 * not find them, and so they reach neither our stdout nor the store.
 */
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) removeDir(d);
});

const SECRETS: Record<string, string> = {
  IKONTAINER_TSIG: "agentkey:hmac-sha256:c2VjcmV0LXRzaWctdmFsdWUtMTIzNDU2Nzg5MA==",
  IKONTAINER_ES_PASSWORD: "secret-es-password-4711",
  IKONTAINER_ES_API_KEY: "secret-es-api-key-4712",
  IKONTAINER_FLUENTD_SHARED_KEY: "secret-fluentd-shared-4713",
  IKONTAINER_FLUENTD_PASSWORD: "secret-fluentd-password-4714",
  IKONTAINER_KIBANA_PASSWORD: "secret-kibana-password-4715",
  IKONTAINER_KIBANA_API_KEY: "secret-kibana-api-key-4716",
};

function storeText(state: string): string {
  const dir = join(state, "store");
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f), "utf8"))
    .join("");
}

describe("exec keeps the agent's secrets from the child", () => {
  it("strips every secret-bearing IKONTAINER_* variable from the child's environment", async () => {
    const s = tempDir("ikon-secrets-");
    dirs.push(s);
    const r = await runCli(
      ["exec", "--svc", "web", "--state-dir", s, "--log-level", "warn", "--", "sh", "-c", "env; echo done"],
      { env: { ...process.env, ...SECRETS, APP_SETTING: "visible-to-the-app" } },
    );
    expect(r.code).toBe(0);
    // The child did print its environment (the application's own variables pass through) ...
    expect(r.stdout).toContain("APP_SETTING=visible-to-the-app");
    const store = storeText(s);
    expect(store).toContain("visible-to-the-app");
    // ... but none of the agent's secrets, under any name, in any output.
    for (const [name, value] of Object.entries(SECRETS)) {
      expect(r.stdout).not.toContain(value);
      expect(r.stdout).not.toContain(`${name}=`);
      expect(r.stderr).not.toContain(value);
      expect(store).not.toContain(value);
    }
  });
});
