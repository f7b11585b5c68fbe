/**
 * The dashboard's build (`npm run build`, which `npm test` runs first):
 * dist/dashboard holds the page, one script and one style sheet, all loaded
 * from the page's own server, and nothing a strict Content-Security-Policy
 * refuses (inline script or style, style attributes, eval).
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../dist/dashboard");

describe("dist/dashboard", () => {
  it("is one page, one script and one style sheet, all from the same host, nothing inline", async () => {
    const files = (await fs.readdir(dist)).sort();
    expect(files.filter((f) => f.endsWith(".js"))).toEqual(["app.js"]);
    expect(files.filter((f) => f.endsWith(".css"))).toEqual(["app.css"]);
    const html = await fs.readFile(path.join(dist, "index.html"), "utf8");
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.map((m) => [/\bsrc="([^"]+)"/.exec(m[1] ?? "")?.[1], m[2]?.trim()])).toEqual([
      ["app.js", ""],
    ]);
    expect(html).not.toMatch(/<style\b/i);
    expect(html).not.toMatch(/\sstyle=/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    const refs = [...html.matchAll(/\b(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(refs.length).toBeGreaterThanOrEqual(3);
    for (const ref of refs) expect(ref).toMatch(/^[a-z0-9][\w.-]*$/i);
  });

  it("fetches nothing from another host, evaluates no strings and imports no fonts", async () => {
    const js = await fs.readFile(path.join(dist, "app.js"), "utf8");
    const css = await fs.readFile(path.join(dist, "app.css"), "utf8");
    expect(js).not.toMatch(/\beval\(|new Function\(|\bFunction\(/);
    expect(js).not.toMatch(/https?:\/\/(?!www\.w3\.org\/)/);
    expect(css).not.toMatch(/@import|@font-face|url\(\s*["']?(?:https?:)?\/\//);
  });
});
