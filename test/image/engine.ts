import { execFile, execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The test's handle on the project's own Docker engine (scripts/docker.sh): start, build, client, stop. */
const SCRIPT = fileURLToPath(new URL("../../scripts/docker.sh", import.meta.url));
const CLIENT = process.env.IKONTAINER_DOCKER_CLI ?? "/usr/bin/docker";

const script = (args: string[]): string =>
  execFileSync("sh", [SCRIPT, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();

/** Starts the engine with this process's lease (a failure throws: the image test never skips). */
export function startEngine(): NodeJS.ProcessEnv {
  script(["start", String(process.pid)]);
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_BUILDKIT: "0" };
  for (const line of script(["env"]).split("\n")) {
    const at = line.indexOf("=");
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

/** Builds the image once for the run; returns its id (not the tag: another work tree may tag too). */
export const buildImage = (): string => script(["build"]);

export function stopEngine(): void {
  script(["stop", String(process.pid)]);
}

export interface DockerResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the Docker client; resolves with the exit code instead of throwing (tests assert on it). */
export function docker(env: NodeJS.ProcessEnv, args: string[]): Promise<DockerResult> {
  return new Promise((resolve) => {
    execFile(CLIENT, args, { env, encoding: "utf8", maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Like docker(), but a non-zero exit is an error naming the command. */
export async function dockerOk(env: NodeJS.ProcessEnv, args: string[]): Promise<string> {
  const r = await docker(env, args);
  if (r.code !== 0) throw new Error(`docker ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}
