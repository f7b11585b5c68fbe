import { accessSync, constants, statSync } from "node:fs";
import * as path from "node:path";

/** Where Chromium is looked for when no path is configured, in order. */
export const CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "chromium", "chromium-browser"];

/** How to get a Chromium when none is found (the notice shown instead of the `browser` tool). */
export const CHROMIUM_INSTALL_HINT =
  "install Chromium (Debian/Ubuntu: apt-get install chromium) or point --browser-path at a Chromium or Chrome executable";

/**
 * Flags every Chromium we start gets. The network ones keep it from opening
 * connections of its own (updates, sync, field trials, QUIC): only the pages
 * the tool opens reach the network, and a closed network refuses the rest.
 */
export const CHROMIUM_BASE_ARGS = [
  "--headless",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * The launch flags for this process: {@link CHROMIUM_BASE_ARGS}, plus
 * `--no-sandbox` when running as root (Chromium refuses its own sandbox as root).
 */
export function chromiumArgs(isRoot = process.getuid?.() === 0): string[] {
  return isRoot ? [...CHROMIUM_BASE_ARGS, "--no-sandbox"] : [...CHROMIUM_BASE_ARGS];
}

function isExecutableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, envPath: string): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/** Result of {@link findChromium}: the executable, or why there is none. */
export type ChromiumLookup =
  | { path: string; problem?: undefined }
  | { path?: undefined; problem: string };

/**
 * Finds the Chromium executable: `configured` (a path, or a name looked up on
 * PATH) when given, else `/usr/bin/chromium`, then `chromium` and
 * `chromium-browser` on PATH.
 */
export function findChromium(
  configured?: string,
  envPath: string = process.env.PATH ?? "",
): ChromiumLookup {
  const resolve = (candidate: string): string | undefined =>
    candidate.includes("/")
      ? isExecutableFile(candidate)
        ? path.resolve(candidate)
        : undefined
      : onPath(candidate, envPath);
  if (configured) {
    const found = resolve(configured);
    return found
      ? { path: found }
      : { problem: `${configured} is not an executable file; ${CHROMIUM_INSTALL_HINT}` };
  }
  for (const candidate of CHROMIUM_CANDIDATES) {
    const found = resolve(candidate);
    if (found) return { path: found };
  }
  return {
    problem: `no Chromium found (looked for ${CHROMIUM_CANDIDATES.join(", ")}); ${CHROMIUM_INSTALL_HINT}`,
  };
}
