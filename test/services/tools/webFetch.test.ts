/**
 * web_fetch against a real HTTP server on 127.0.0.1 (port 0); never the internet.
 */

import fs from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { decodeEntities, htmlToText } from "../../../src/services/tools/htmlText.js";
import { createToolbox, type ToolboxOptions } from "../../../src/services/tools/index.js";
import type { ToolContext, ToolOutcome } from "../../../src/services/tools/types.js";
import {
  hostAllowed,
  isPrivateAddress,
  WEB_FETCH_MAX_BYTES,
} from "../../../src/services/tools/webFetch.js";

type Route = (req: IncomingMessage, res: ServerResponse) => void;

let server: Server;
let sockets: Set<Socket>;
let origin: string;
let routes: Record<string, Route>;
let hits: string[];
let base: string;
let ctx: ToolContext;
let n = 0;

beforeEach(async () => {
  routes = {};
  hits = [];
  sockets = new Set();
  server = createServer((req, res) => {
    hits.push(req.url ?? "");
    const route = routes[req.url ?? ""];
    if (route) route(req, res);
    else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not here");
    }
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "rc-web-")));
  await fs.mkdir(path.join(base, ".ravenclaws"));
  ctx = { workdir: base, stateDir: path.join(base, ".ravenclaws") };
});

afterEach(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await fs.rm(base, { recursive: true, force: true });
});

const local: ToolboxOptions = { web: { allowedHosts: ["127.0.0.1"] } };

function fetchTool(
  url: string,
  options: ToolboxOptions = local,
  signal?: AbortSignal,
): Promise<ToolOutcome> {
  n += 1;
  return createToolbox(ctx, options).call(
    { id: `w${n}`, name: "web_fetch", arguments: JSON.stringify({ url }) },
    signal,
  );
}

const page = `<!doctype html>
<html><head><title>Test &amp; Page</title><style>body { color: red }</style>
<script>var secret = "do not show";</script></head>
<body>
<!-- a comment that must go -->
<h1>Main   heading</h1>
<p>First paragraph with <b>bold</b> and a <a href="/next">relative link</a>.</p>
<ul><li>one</li><li>two &lt;3&gt;</li></ul>
<pre>  indented
    code</pre>
<noscript>enable javascript</noscript>
<p>caf&eacute; &#8212; &#x263A; &nbsp;end</p>
</body></html>`;

describe("web_fetch: off unless enabled", () => {
  it("is not offered by default, and a call is refused with how to enable it", async () => {
    const toolbox = createToolbox(ctx);
    expect(toolbox.definitions.map((d) => d.function.name)).not.toContain("web_fetch");
    const outcome = await fetchTool(`${origin}/`, {});
    expect(outcome.status).toBe("refused");
    expect(outcome.content).toContain("web_fetch is disabled");
    expect(outcome.content).toContain("--allow-web");
    expect(hits).toEqual([]);
  });

  it("is offered as the sixth tool with --allow-web or an allowed-hosts list", () => {
    for (const web of [{ enabled: true }, { allowedHosts: ["example.com"] }]) {
      expect(createToolbox(ctx, { web }).definitions.map((d) => d.function.name)).toEqual([
        "shell_exec",
        "read_file",
        "write_file",
        "edit_file",
        "list_dir",
        "web_fetch",
      ]);
    }
  });
});

describe("web_fetch: fetching", () => {
  it("reduces HTML to text: title, headings, lists, links, entities; no script or style", async () => {
    routes["/"] = (_req, res) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(page);
    };
    const outcome = await fetchTool(`${origin}/`);
    expect(outcome.status).toBe("ok");
    expect(outcome.content).toBe(
      [
        `URL: ${origin}/`,
        "Status: 200 OK",
        "Content-Type: text/html; charset=utf-8",
        "",
        "Title: Test & Page",
        "",
        "# Main heading",
        "",
        `First paragraph with bold and a relative link (${origin}/next).`,
        "",
        "- one",
        "- two <3>",
        "",
        "  indented",
        "    code",
        "",
        "café — ☺ end",
      ].join("\n"),
    );
    for (const hidden of ["secret", "color: red", "comment", "enable javascript"]) {
      expect(outcome.content).not.toContain(hidden);
    }
  });

  it("returns text and JSON as they are, with the status of an error page", async () => {
    routes["/data.json"] = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"a": 1}');
    };
    expect((await fetchTool(`${origin}/data.json`)).content).toMatch(
      /Content-Type: application\/json\n\n\{"a": 1\}$/,
    );
    const missing = await fetchTool(`${origin}/missing`);
    expect(missing.status).toBe("ok");
    expect(missing.content).toContain("Status: 404 Not Found");
    expect(missing.content).toMatch(/not here$/);
  });

  it("does not show binary content", async () => {
    routes["/img"] = (_req, res) => {
      res.writeHead(200, { "content-type": "image/png" });
      res.end(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0]));
    };
    expect((await fetchTool(`${origin}/img`)).content).toContain(
      "[Binary content (image/png, 7 bytes read) is not shown.]",
    );
  });

  it("reads at most 1 MB and returns at most 50,000 characters, saying so", async () => {
    routes["/big"] = (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      const chunk = "x".repeat(64 * 1024);
      for (let i = 0; i < 48; i += 1) res.write(chunk);
      res.end();
    };
    const outcome = await fetchTool(`${origin}/big`);
    expect(outcome.status).toBe("ok");
    expect(outcome.content).toContain(
      `[Body cut at ${WEB_FETCH_MAX_BYTES.toLocaleString("en-US")} bytes; the rest was not downloaded.]`,
    );
    expect(outcome.content).toContain(
      `[Text cut at 50,000 characters; ${(WEB_FETCH_MAX_BYTES - 50_000).toLocaleString("en-US")} more not shown.]`,
    );
    expect(outcome.content.length).toBeLessThan(51_000);
  });

  it("gives up after the time cap", async () => {
    routes["/slow"] = (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("partial");
    };
    const started = Date.now();
    const outcome = await fetchTool(`${origin}/slow`, {
      web: { allowedHosts: ["127.0.0.1"], timeoutMs: 300 },
    });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(outcome.status).toBe("error");
    expect(outcome.content).toBe(`Error: Timed out after 0.3 s fetching ${origin}/slow.`);
  });

  it("stops when the tick is aborted", async () => {
    routes["/hang"] = () => {};
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const outcome = await fetchTool(`${origin}/hang`, local, controller.signal);
    expect(outcome).toMatchObject({
      status: "error",
      content: "Error: Aborted: the tick was stopped.",
    });
  });

  it("follows redirects within the allowed hosts and says where it came from", async () => {
    routes["/old"] = (_req, res) => {
      res.writeHead(301, { location: "/new" });
      res.end();
    };
    routes["/new"] = (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("moved here");
    };
    const outcome = await fetchTool(`${origin}/old`);
    expect(outcome.content).toContain(`URL: ${origin}/new`);
    expect(outcome.content).toContain(`Redirected from: ${origin}/old`);
    expect(outcome.content).toMatch(/moved here$/);
  });

  it("stops after five redirects", async () => {
    routes["/loop"] = (_req, res) => {
      res.writeHead(302, { location: "/loop" });
      res.end();
    };
    const outcome = await fetchTool(`${origin}/loop`);
    expect(outcome.status).toBe("error");
    expect(outcome.content).toContain("Too many redirects (more than 5)");
    expect(hits).toHaveLength(6);
  });
});

describe("web_fetch: refusals", () => {
  it("refuses non-http schemes", async () => {
    for (const url of ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:text/plain,hi"]) {
      const outcome = await fetchTool(url, { web: { enabled: true } });
      expect(outcome.status, url).toBe("refused");
      expect(outcome.content, url).toContain("only fetches http:// and https:// URLs");
    }
    expect((await fetchTool("not a url", { web: { enabled: true } })).content).toContain(
      "not a valid absolute URL",
    );
  });

  it("refuses a host that is not allowed, before any request", async () => {
    const outcome = await fetchTool(`${origin}/`, {
      web: { allowedHosts: ["example.com", "*.example.org"] },
    });
    expect(outcome.status).toBe("refused");
    expect(outcome.content).toBe(
      "Refused: the host 127.0.0.1 is not in the allowed hosts (example.com, *.example.org).",
    );
    expect(hits).toEqual([]);
  });

  it("re-checks every redirect: a hop to a host not allowed is refused", async () => {
    const port = (server.address() as AddressInfo).port;
    routes["/away"] = (_req, res) => {
      res.writeHead(302, { location: `http://localhost:${port}/secret` });
      res.end();
    };
    const outcome = await fetchTool(`${origin}/away`);
    expect(outcome.status).toBe("refused");
    expect(outcome.content).toContain("the host localhost is not in the allowed hosts");
    expect(hits).toEqual(["/away"]);
  });

  it("with --allow-web alone, refuses loopback, private and link-local addresses", async () => {
    const web = {
      enabled: true,
      resolve: async (host: string) =>
        host === "intranet.example" ? ["10.1.2.3"] : ["203.0.113.9"],
    };
    for (const url of [
      `${origin}/`,
      "http://localhost:1/",
      "http://169.254.169.254/latest/meta-data",
      "http://intranet.example/",
      "http://[::1]/",
    ]) {
      const outcome = await fetchTool(url, { web });
      expect(outcome.status, url).toBe("refused");
      expect(outcome.content, url).toContain("loopback, private or link-local address");
    }
    expect(hits).toEqual([]);
  });

  it("applies fetch(host) rules: deny, and ask with the operator's answer", async () => {
    routes["/"] = (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("hello");
    };
    const denied = await fetchTool(`${origin}/`, {
      ...local,
      policy: { deny: ["fetch(127.0.0.*)"] },
    });
    expect(denied.status).toBe("refused");
    expect(denied.content).toContain('deny rule "fetch(127.0.0.*)"');
    const questions: string[] = [];
    const asked = await fetchTool(`${origin}/`, {
      ...local,
      policy: { ask: ["fetch"] },
      ask: async (q) => {
        questions.push(q);
        return true;
      },
    });
    expect(asked.status).toBe("ok");
    expect(questions).toEqual([`web_fetch wants to fetch ${origin}/ (rule ask "fetch"). Allow?`]);
    expect(hits).toEqual(["/"]);
  });
});

describe("host checks", () => {
  it("matches allowed hosts exactly or as *.domain subdomains", () => {
    expect(hostAllowed("example.com", ["example.com"])).toBe(true);
    expect(hostAllowed("EXAMPLE.com.", ["example.com"])).toBe(true);
    expect(hostAllowed("api.example.com", ["example.com"])).toBe(false);
    expect(hostAllowed("api.example.com", ["*.example.com"])).toBe(true);
    expect(hostAllowed("a.b.example.com", ["*.example.com"])).toBe(true);
    expect(hostAllowed("example.com", ["*.example.com"])).toBe(false);
    expect(hostAllowed("badexample.com", ["*.example.com"])).toBe(false);
    expect(hostAllowed("::1", ["[::1]"])).toBe(true);
  });

  it("knows loopback, private and link-local addresses", () => {
    for (const ip of [
      "127.0.0.1",
      "10.0.0.1",
      "172.16.5.4",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
      "::1",
      "fd00::1",
      "fe80::1",
      "::ffff:127.0.0.1",
    ]) {
      expect(isPrivateAddress(ip), ip).toBe(true);
    }
    for (const ip of ["8.8.8.8", "93.184.216.34", "172.32.0.1", "2606:4700::1111"]) {
      expect(isPrivateAddress(ip), ip).toBe(false);
    }
  });
});

describe("htmlToText", () => {
  it("survives unclosed elements and stray brackets", () => {
    expect(htmlToText("<p>a < b and c > d</p><script>never closed")).toBe("a < b and c > d");
    expect(htmlToText('<a href="javascript:alert(1)">click</a> <img alt="logo" src="x.png">')).toBe(
      "click [image: logo]",
    );
  });

  it("decodes named and numeric entities, leaving unknown ones", () => {
    expect(decodeEntities("&lt;&gt;&amp;&quot;&#39;&#x41;&hellip;&unknown;")).toBe(
      "<>&\"'A…&unknown;",
    );
  });

  it("is fast on a large page", () => {
    const big = `<html><body>${"<div><p>Some <b>text</b> &amp; <a href='/x'>link</a></p></div>".repeat(5_000)}</body></html>`;
    const started = performance.now();
    const text = htmlToText(big, "http://h/");
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(text.startsWith("Some text & link (http://h/x)")).toBe(true);
  });
});
