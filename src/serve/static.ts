/**
 * The dashboard's static files (`dist/dashboard/`, written by `npm run
 * build`): correct content types, nothing outside the directory (no `..`, no
 * symlink out of it), and a clear 503 page when the dashboard was not built.
 */
import * as fs from "node:fs/promises";
import type { ServerResponse } from "node:http";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** Content types by file extension; anything else is `application/octet-stream`. */
export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".txt": "text/plain; charset=utf-8",
  ".webmanifest": "application/manifest+json",
};

/** The package's root (the directory holding its package.json), from this module's place in `src/` or `dist/`. */
export function packageRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
}

/** Where `npm run build` writes the dashboard. */
export function defaultDashboardDir(): string {
  return path.join(packageRoot(), "dist", "dashboard");
}

/** The page sent when the dashboard was not built (503). */
export function notBuiltPage(dir: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ravenclaws: dashboard not built</title></head>
<body><h1>The dashboard was not built</h1>
<p>This server found no <code>index.html</code> in <code>${escapeHtml(dir)}</code>.
Run <code>npm run build</code> in the ravenclaws package, then reload.
The API works meanwhile: <a href="/api/heartbeats">/api/heartbeats</a>.</p>
</body></html>
`;
}

/** HTML-escapes text. */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );
}

/**
 * The file under `root` a URL path names, or null when it is outside it,
 * malformed, or not a regular file. A path without an extension that names
 * no file gets `index.html` (the page's own routes).
 */
export async function resolveStaticFile(root: string, urlPath: string): Promise<string | null> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes("\0") || decoded.includes("\\")) return null;
  const segments = decoded.split("/").filter((s) => s !== "");
  if (segments.some((s) => s === ".." || s === "." || s.startsWith("."))) return null;
  let realRoot: string;
  try {
    realRoot = await fs.realpath(root);
  } catch {
    return null;
  }
  const candidate = path.join(realRoot, ...segments);
  const file = await regularFileInside(realRoot, candidate);
  if (file) return file;
  const last = segments[segments.length - 1] ?? "";
  if (segments.length === 0 || path.extname(last) === "") {
    const index = await regularFileInside(
      realRoot,
      path.join(segments.length === 0 ? realRoot : candidate, "index.html"),
    );
    if (index) return index;
    if (segments.length > 0) return regularFileInside(realRoot, path.join(realRoot, "index.html"));
  }
  return null;
}

/** The real path of `file` if it is a regular file inside `realRoot` (symlinks resolved). */
async function regularFileInside(realRoot: string, file: string): Promise<string | null> {
  try {
    const real = await fs.realpath(file);
    const rel = path.relative(realRoot, real);
    if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) return null;
    const stat = await fs.stat(real);
    return stat.isFile() ? real : null;
  } catch {
    return null;
  }
}

/** Whether the dashboard was built into `root` (its `index.html` exists). */
export async function dashboardBuilt(root: string): Promise<boolean> {
  return (await fs.stat(path.join(root, "index.html")).catch(() => null))?.isFile() ?? false;
}

/**
 * Answers a GET/HEAD for a static file: 200 with its content type, 404, or
 * 503 when the dashboard was not built.
 */
export async function serveStatic(
  root: string,
  urlPath: string,
  res: ServerResponse,
  head: boolean,
): Promise<void> {
  if (!(await dashboardBuilt(root))) {
    sendHtml(res, 503, notBuiltPage(root), head);
    return;
  }
  const file = await resolveStaticFile(root, urlPath);
  if (!file) {
    res.statusCode = 404;
    res.setHeader("Content-Type", "text/plain; charset=utf-8");
    res.end(head ? undefined : "Not found.\n");
    return;
  }
  const body = await fs.readFile(file);
  const ext = path.extname(file).toLowerCase();
  res.statusCode = 200;
  res.setHeader("Content-Type", CONTENT_TYPES[ext] ?? "application/octet-stream");
  res.setHeader("Content-Length", body.length);
  // The page itself is always fetched again; hashed assets may be cached.
  res.setHeader("Cache-Control", ext === ".html" ? "no-store" : "no-cache");
  res.end(head ? undefined : body);
}

/** Sends an HTML page. */
export function sendHtml(res: ServerResponse, status: number, html: string, head = false): void {
  res.statusCode = status;
  res.setHeader("Content-Type", "text/html; charset=utf-8");
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Content-Length", Buffer.byteLength(html));
  res.end(head ? undefined : html);
}
