/**
 * The browser tool through the toolbox, driving the real system Chromium
 * (playwright-core) against pages served on loopback. One browser session
 * (one Chromium launch) for the file; `127.0.0.1` is the allowed host and
 * `localhost` (same server, other name) the one outside the list.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { BrowserSession } from "../../../src/services/browser/session.js";
import { htmlToText } from "../../../src/services/tools/htmlText.js";
import {
  createToolbox,
  type Toolbox,
  type ToolboxOptions,
} from "../../../src/services/tools/index.js";
import type { ToolContext, ToolOutcome } from "../../../src/services/tools/types.js";
import { describeWithChromium, processesWithEnv, requireChromium } from "../../support/chromium.js";

type Route = (req: IncomingMessage, res: ServerResponse) => void;

const html =
  (body: string): Route =>
  (_req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(
      `<!doctype html><html><head><title>Test page</title></head><body>${body}</body></html>`,
    );
  };

describeWithChromium("the browser tool", () => {
  let server: Server;
  let wss: WebSocketServer;
  let port: number;
  let allowed: string;
  let outside: string;
  let hits: string[];
  let wsConnections: number;
  let routes: Record<string, Route>;
  let base: string;
  let ctx: ToolContext;
  let session: BrowserSession;
  let n = 0;
  const marker = randomUUID();

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(`${req.headers.host?.split(":")[0]}${req.url}`);
      const route = routes[req.url ?? ""];
      if (route) route(req, res);
      else {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not here");
      }
    });
    wss = new WebSocketServer({ server });
    wss.on("connection", (socket) => {
      wsConnections += 1;
      socket.send("hello");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
    allowed = `http://127.0.0.1:${port}`;
    outside = `http://localhost:${port}`;
    base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-browser-")));
    await fs.mkdir(path.join(base, ".ravenclaws"));
    ctx = { workdir: base, stateDir: path.join(base, ".ravenclaws") };
    session = new BrowserSession({
      executablePath: requireChromium(),
      allowedHosts: ["127.0.0.1"],
      env: { ...process.env, BROWSER_UNIT_MARKER: marker },
      actionTimeoutMs: 3_000,
    });
  });

  afterAll(async () => {
    await session?.close();
    wss?.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(base, { recursive: true, force: true });
  });

  beforeEach(() => {
    hits = [];
    wsConnections = 0;
    routes = {};
  });

  function toolbox(options: ToolboxOptions = {}): Toolbox {
    return createToolbox(ctx, {
      web: { allowedHosts: ["127.0.0.1"] },
      browser: { session },
      ...options,
    });
  }

  async function browse(args: unknown, box: Toolbox = toolbox()): Promise<ToolOutcome> {
    n += 1;
    return box.call({ id: `b${n}`, name: "browser", arguments: JSON.stringify(args) });
  }

  it("returns text a page inserts with JavaScript after load, which web_fetch's reading misses", async () => {
    const page = `<h1>Birds</h1><div id="out"></div>
      <script>
        addEventListener("load", async () => {
          const data = await (await fetch("/data.json")).json();
          document.getElementById("out").textContent = data.message;
        });
      </script>`;
    routes["/"] = html(page);
    routes["/data.json"] = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ message: "Ravens can mimic human speech" }));
    };
    const opened = await browse({ action: "open", url: `${allowed}/` });
    expect(opened.status, opened.content).toBe("ok");
    expect(opened.content).toContain('(title: "Test page") (HTTP 200)');
    const text = await browse({ action: "text" });
    expect(text.status, text.content).toBe("ok");
    expect(text.content).toContain("Birds");
    expect(text.content).toContain("Ravens can mimic human speech");
    // The same page as web_fetch reads it (HTML reduced to text): no such sentence.
    expect(htmlToText(page)).not.toContain("Ravens can mimic");
  });

  it("refuses to open a host outside the allowed hosts, before any request", async () => {
    routes["/secret"] = html("secret");
    const out = await browse({ action: "open", url: `${outside}/secret` });
    expect(out.status).toBe("refused");
    expect(out.content).toContain("the host localhost is not in the allowed hosts (127.0.0.1)");
    expect(hits).toEqual([]);
  });

  it("without an allow-list (--allow-web) refuses loopback and private addresses", async () => {
    const open = new BrowserSession({
      executablePath: requireChromium(),
      allowedHosts: [],
      env: {},
    });
    const box = createToolbox(ctx, { web: { enabled: true }, browser: { session: open } });
    for (const url of [`${allowed}/`, `${outside}/`, "http://10.0.0.1/", "http://[::1]/"]) {
      const out = await browse({ action: "open", url }, box);
      expect(out.status, url).toBe("refused");
      expect(out.content).toContain("loopback, private or link-local");
    }
    expect(hits).toEqual([]);
    // Refused before Chromium was started.
    expect(open.running).toBe(false);
  });

  it("refuses file:, data:, javascript:, chrome: and view-source: URLs", async () => {
    for (const url of [
      "file:///etc/passwd",
      "data:text/html,<p>x</p>",
      "javascript:alert(1)",
      "chrome://version",
      `view-source:${allowed}/`,
    ]) {
      const out = await browse({ action: "open", url });
      expect(out.status, url).toBe("refused");
      expect(out.content).toContain("only http:// and https://");
    }
  });

  it("blocks redirects, subresources, fetches and websockets to hosts outside the list", async () => {
    routes["/hop"] = (_req, res) => {
      res.writeHead(302, { location: `${outside}/secret` });
      res.end();
    };
    routes["/secret"] = html("secret");
    const redirected = await browse({ action: "open", url: `${allowed}/hop` });
    expect(redirected.status).toBe("refused");
    expect(redirected.content).toContain(
      `redirected to ${outside}/secret, which is blocked: the host localhost is not in the allowed hosts`,
    );

    routes["/page"] = html(`<p>page</p>
      <img src="${outside}/img.png">
      <script>
        fetch("${outside}/api").catch(() => {});
        const ws = new WebSocket("ws://localhost:${port}/");
        ws.onmessage = () => { document.title = "leaked"; };
        const ok = new WebSocket("ws://127.0.0.1:${port}/");
        ok.onmessage = () => { document.body.append("ws allowed ok"); };
      </script>`);
    const opened = await browse({ action: "open", url: `${allowed}/page` });
    expect(opened.status, opened.content).toBe("ok");
    const text = await browse({ action: "text" });
    expect(text.content).toContain("ws allowed ok");
    expect(text.content).not.toContain("leaked");
    expect(opened.content + text.content).toContain("Blocked requests");
    // Only the allowed name ever reached the server: no redirect target, image, fetch or socket.
    expect(hits.filter((h) => h.startsWith("localhost"))).toEqual([]);
    expect(wsConnections).toBe(1);
  });

  it("clicks and fills by role, text and selector", async () => {
    routes["/form"] = html(`<label>Name <input id="name"></label>
      <button onclick="document.getElementById('greeting').textContent = 'Hello, ' + document.getElementById('name').value">Greet</button>
      <p id="greeting"></p>`);
    expect((await browse({ action: "open", url: `${allowed}/form` })).status).toBe("ok");
    const filled = await browse({ action: "fill", role: "textbox", name: "Name", value: "Huginn" });
    expect(filled.status, filled.content).toBe("ok");
    const clicked = await browse({ action: "click", text: "Greet" });
    expect(clicked.status, clicked.content).toBe("ok");
    expect((await browse({ action: "text" })).content).toContain("Hello, Huginn");
    await browse({ action: "fill", selector: "#name", value: "Muninn" });
    await browse({ action: "click", role: "button", name: "Greet" });
    expect((await browse({ action: "text" })).content).toContain("Hello, Muninn");
    const missing = await browse({ action: "click", selector: "#nope" });
    expect(missing.status).toBe("error");
    expect(missing.content).toContain('Clicking selector "#nope" failed');
  });

  it("saves a screenshot inside the workspace only, through the write rules", async () => {
    routes["/shot"] = html("<p>picture me</p>");
    await browse({ action: "open", url: `${allowed}/shot` });
    const saved = await browse({ action: "screenshot", path: "shots/page.png" });
    expect(saved.status, saved.content).toBe("ok");
    expect(saved.content).toContain("to shots/page.png");
    const png = await fs.readFile(path.join(base, "shots/page.png"));
    expect(png.subarray(1, 4).toString()).toBe("PNG");

    const upward = await browse({ action: "screenshot", path: "../outside.png" });
    expect(upward.status).toBe("refused");
    const state = await browse({ action: "screenshot", path: ".ravenclaws/x.png" });
    expect(state.status).toBe("refused");
    const denied = await browse(
      { action: "screenshot", path: "shots/b.png" },
      toolbox({ policy: { deny: ["write(shots/**)"] } }),
    );
    expect(denied.status).toBe("refused");
    await expect(fs.access(path.join(base, "shots/b.png"))).rejects.toThrow();
  });

  it("applies browse(HOST) rules and ends the tick by closing the browser", async () => {
    routes["/"] = html("<p>hi</p>");
    const denied = await browse(
      { action: "open", url: `${allowed}/` },
      toolbox({ policy: { deny: ["browse(127.0.0.1)"] } }),
    );
    expect(denied.status).toBe("refused");
    expect(denied.content).toContain('the deny rule "browse(127.0.0.1)" matches');
    expect(hits).toEqual([]);

    const box = toolbox();
    expect((await browse({ action: "open", url: `${allowed}/` }, box)).status).toBe("ok");
    expect(session.running).toBe(true);
    await box.endTick();
    expect(session.running).toBe(false);
    const after = await browse({ action: "text" }, box);
    expect(after.status).toBe("error");
    expect(after.content).toContain('action "open"');
  });

  it("starts a new Chromium when the old one died, and leaves none after close", async () => {
    routes["/"] = html("<p>alive</p>");
    expect((await browse({ action: "open", url: `${allowed}/` })).status).toBe("ok");
    const pids = await processesWithEnv("BROWSER_UNIT_MARKER", marker);
    expect(pids.length).toBeGreaterThan(0);
    for (const pid of pids) process.kill(pid, "SIGKILL");
    await expect.poll(() => session.running, { timeout: 15_000 }).toBe(false);
    const again = await browse({ action: "open", url: `${allowed}/` });
    expect(again.status, again.content).toBe("ok");
    expect((await browse({ action: "text" })).content).toContain("alive");
    await session.close();
    expect(await processesWithEnv("BROWSER_UNIT_MARKER", marker)).toEqual([]);
  }, 90_000);
});
