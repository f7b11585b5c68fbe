// Rewrites the README's configuration table from the settings table (run after `npm run build`).
import { readFile, writeFile } from "node:fs/promises";
import { embedSettings } from "../dist/services/settingsDoc.js";

const file = new URL("../README.md", import.meta.url);
const updated = embedSettings(await readFile(file, "utf8"));
if (updated === null) {
  console.error("README.md has no <!-- settings:start --> … <!-- settings:end --> markers.");
  process.exit(1);
}
await writeFile(file, updated);
