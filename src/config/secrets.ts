/**
 * Environment variables that carry the agent's secrets (every one the config reads): the TSIG key (setting
 * `tsig`), the Elasticsearch password and API key, the fluentd shared key and password, the Kibana password and
 * API key (`dashboards import`). `exec` removes them from its child's environment, so the application it wraps
 * cannot sign DNS updates or write to the log backends as the agent. The pattern also covers secrets added
 * later under the same naming (…_PASSWORD, …_API_KEY, …_SHARED_KEY, …_SECRET, …_TOKEN).
 */
export const SECRET_ENV_VARS = [
  "IKONTAINER_TSIG",
  "IKONTAINER_ES_PASSWORD",
  "IKONTAINER_ES_API_KEY",
  "IKONTAINER_FLUENTD_SHARED_KEY",
  "IKONTAINER_FLUENTD_PASSWORD",
  "IKONTAINER_KIBANA_PASSWORD",
  "IKONTAINER_KIBANA_API_KEY",
] as const;

const SECRET_NAME = /^IKONTAINER_\w*(PASSWORD|API_KEY|SHARED_KEY|SECRET|TOKEN|TSIG)$/;

export function isSecretEnvVar(name: string): boolean {
  return (SECRET_ENV_VARS as readonly string[]).includes(name) || SECRET_NAME.test(name);
}

/** The environment for a wrapped application: ours without the agent's secrets. */
export function childEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!isSecretEnvVar(k)) out[k] = v;
  return out;
}
