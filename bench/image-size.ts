/**
 * Expected size of the Docker image (issue 5) without a Docker engine: what the Dockerfile's runtime stage
 * adds on top of node:20-alpine is the `npm pack` output plus `npm ci --omit=dev`. This measures exactly
 * that (bytes on disk, and as a gzip'd tar, which is how a registry stores and transfers a layer).
 *
 *   npm run build && npx tsc -p bench/tsconfig.json && node bench/.work/dist/bench/image-size.js
 *
 * Result: bench/results/image-size.json.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, HERE.includes("/.work/dist/") ? "../../../.." : "..");

const du = (p: string) => Number(execFileSync("du", ["-sb", p], { encoding: "utf8" }).split("\t")[0]);
const mb = (b: number) => Math.round((b / 1e6) * 10) / 10;

function main(): void {
  const dir = mkdtempSync(join(os.tmpdir(), "ikon-image-"));
  try {
    const packed = JSON.parse(
      execFileSync("npm", ["pack", "--json", "--pack-destination", dir], { cwd: ROOT, encoding: "utf8" }),
    ) as Array<{ filename: string }>;
    execFileSync("tar", ["-xzf", join(dir, packed[0]!.filename), "-C", dir]);
    const app = join(dir, "package");
    copyFileSync(join(ROOT, "package-lock.json"), join(app, "package-lock.json"));
    execFileSync("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund"], { cwd: app, stdio: "ignore" });
    rmSync(join(app, "package-lock.json"));
    // The layer as the Dockerfile copies it: node_modules, dist, package.json.
    execFileSync("tar", ["-czf", join(dir, "layer.tgz"), "-C", app, "node_modules", "dist", "package.json"]);
    const deps = execFileSync("npm", ["ls", "--omit=dev", "--all", "--parseable"], {
      cwd: app,
      encoding: "utf8",
    })
      .split("\n")
      .filter((l) => l.includes("node_modules")).length;
    const result = {
      benchmark: "image-size",
      date: new Date().toISOString(),
      app: {
        dist: du(join(app, "dist")),
        nodeModules: du(join(app, "node_modules")),
        total:
          du(join(app, "node_modules")) + du(join(app, "dist")) + statSync(join(app, "package.json")).size,
        layerGzip: statSync(join(dir, "layer.tgz")).size,
        productionPackages: deps,
      },
      base: {
        image: "node:20-alpine (linux/amd64)",
        compressedMB: 45.1,
        source:
          "Docker Hub tag listing of a re-push of node:20.17.0-alpine3.20, linux/amd64: 45.13 MB compressed (hub.docker.com/r/ygqygq2/node/tags); no Docker engine here to pull the official tag",
        removedInRuntimeStage:
          "npm and yarn are deleted in the runtime stage so nothing in the container can run them; the base layers still hold them, so the image is not smaller for it",
        npmBytesHere: du(
          dirname(
            dirname(execFileSync("sh", ["-c", "readlink -f $(command -v npm)"], { encoding: "utf8" }).trim()),
          ),
        ),
      },
    };
    const summary = {
      appMB: mb(result.app.total),
      appLayerGzipMB: mb(result.app.layerGzip),
      expectedImageCompressedMB: `about ${Math.round(45.1 + mb(result.app.layerGzip))} (base 45.1 + app layer ${mb(result.app.layerGzip)})`,
    };
    mkdirSync(join(ROOT, "bench/results"), { recursive: true });
    writeFileSync(
      join(ROOT, "bench/results/image-size.json"),
      `${JSON.stringify({ ...result, summary }, null, 2)}\n`,
    );
    console.log(JSON.stringify({ ...result, summary }, null, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main();
