// The image's build of the agent (issue 13): the tsc output in dist/ bundled and minified by esbuild into
// dist-bundle/cli/main.js plus chunks, so `run` reads ~20 small files instead of ~200 and parses only the code
// its command uses (code splitting keeps every `await import()` lazy; one single file costs more memory, since
// V8 then parses every command's code: 66 vs 54 MiB idle when measured).
//
//   npx tsc -p tsconfig.build.json && node scripts/bundle.mjs [OUTDIR]
//
// The layout mirrors dist/ (dist-bundle/cli/main.js), so the CLI's `../../package.json` and `../../dashboards`
// resolve the same way beside it. yaml and dns-packet stay in node_modules: they load through createRequire
// only when a config file or DNS is used.
import { rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = resolve(process.argv[2] ?? join(ROOT, "dist-bundle"));

rmSync(OUT, { recursive: true, force: true });
await build({
  entryPoints: [join(ROOT, "dist/cli/main.js")],
  outdir: join(OUT, "cli"),
  // Chunks sit beside main.js, so each one's import.meta.url finds ../../package.json and ../../dashboards.
  chunkNames: "[name]-[hash]",
  bundle: true,
  splitting: true,
  minify: true,
  format: "esm",
  platform: "node",
  target: "node20",
  external: ["yaml", "dns-packet"],
  // CommonJS dependencies call require() on Node built-ins; an ESM bundle has no require of its own.
  banner: {
    js: "import{createRequire as __ikonRequire}from'node:module';const require=__ikonRequire(import.meta.url);",
  },
  logLevel: "warning",
});
console.log(`bundle: ${join(OUT, "cli/main.js")}`);
