import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO } from "./render.js";

/**
 * What the Dockerfile's runtime stage gets: the `npm pack` tarball (package.json `files`: dist, …) plus a
 * production install (`npm ci --omit=dev`) in a clean folder. It must run the CLI with no dev dependency.
 */
let dir: string;
let pkg: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "ikon-install-"));
  const packed = JSON.parse(
    execFileSync("npm", ["pack", "--json", "--pack-destination", dir], { cwd: REPO, encoding: "utf8" }),
  ) as Array<{ filename: string }>;
  execFileSync("tar", ["-xzf", join(dir, packed[0]!.filename), "-C", dir]);
  pkg = join(dir, "package");
  copyFileSync(join(REPO, "package-lock.json"), join(pkg, "package-lock.json"));
  execFileSync("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund"], { cwd: pkg, stdio: "ignore" });
}, 300_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("production install from npm pack", () => {
  it("runs ikontainer --help and the node-mode help", () => {
    const bin = (
      JSON.parse(readFileSync(join(pkg, "package.json"), "utf8")) as { bin: Record<string, string> }
    ).bin.ikontainer!;
    const run = (...args: string[]) =>
      execFileSync(process.execPath, [join(pkg, bin), ...args], { encoding: "utf8" });
    const top = run("--help");
    expect(top).toMatch(/^Usage: ikontainer /);
    for (const cmd of ["run", "exec", "cuid"]) expect(top).toContain(`  ${cmd} `);
    expect(run("run", "--help")).toContain("--mode <value>");
    expect(run("--version").trim()).toBe(
      (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version,
    );
  });

  it("has no development dependency and no sources or tests", () => {
    const dev = Object.keys(
      (
        JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as {
          devDependencies: Record<string, string>;
        }
      ).devDependencies,
    );
    for (const d of dev) expect(existsSync(join(pkg, "node_modules", d)), d).toBe(false);
    for (const p of ["src", "test", "bench", "deploy", ".cache"])
      expect(existsSync(join(pkg, p)), p).toBe(false);
    // A guard against accidental bloat of the image layer (measured figure: bench/results/image-size.json).
    const kb = Number(execFileSync("du", ["-sk", pkg], { encoding: "utf8" }).split("\t")[0]);
    expect(kb).toBeLessThan(80 * 1024);
  });
});
