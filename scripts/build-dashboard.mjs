// Bundles the dashboard (src/dashboard) into dist/dashboard: index.html, one
// JS bundle (app.js), one CSS file (app.css) and the icon. Everything the page
// loads comes from the package: no CDN, no font or script from another host.
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src", "dashboard");
const out = join(root, "dist", "dashboard");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: { app: join(src, "main.tsx") },
  outdir: out,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022", "chrome110", "firefox115", "safari16"],
  jsx: "automatic",
  jsxImportSource: "preact",
  minify: true,
  legalComments: "linked",
  logLevel: "warning",
  tsconfig: join(src, "tsconfig.json"),
});
for (const file of ["index.html", "favicon.svg"]) await copyFile(join(src, file), join(out, file));
