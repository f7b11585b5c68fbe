/**
 * The web tools end to end: the built CLI, the fake OpenAI server scripting
 * tool calls, a fake search provider on 127.0.0.1.
 */

import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { describeWithChromium, processesWithEnv } from "../support/chromium.js";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import {
  DEFAULT_ASSESSMENT,
  jsonMessage,
  message,
  type RecordedRequest,
  type Reply,
  scripted,
  toolCalls,
} from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const API_KEY = "sk-test-WEB-0123456789abcdef";
const h = useCliHarness({
  prefix: "ravenclaws-web-",
  realpath: true,
  subdir: "work",
  model: "test-model",
  flags: ["--goal", "Find out about ravens"],
});
const env = (extra: Record<string, string> = {}) => cleanEnv({ OPENAI_API_KEY: API_KEY, ...extra });

/** The tool messages the model was sent back, by call id. */
function toolReplies(requests: RecordedRequest[]): Map<string, string> {
  const replies = new Map<string, string>();
  for (const req of requests) {
    for (const m of req.body?.messages ?? []) {
      if (m.role === "tool") replies.set(m.tool_call_id, String(m.content));
    }
  }
  return replies;
}

let searx: Server;
let searxUrl: string;
const queries: string[] = [];
beforeEach(async () => {
  queries.length = 0;
  searx = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    queries.push(`${url.pathname}?${url.searchParams}`);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        results: [
          {
            title: "Corvus corax, the common raven",
            url: "https://birds.example/raven",
            content: "Large black passerine.",
          },
          { title: "Second hit", url: "https://birds.example/2", content: "" },
        ],
      }),
    );
  });
  await new Promise<void>((resolve) => searx.listen(0, "127.0.0.1", resolve));
  searxUrl = `http://127.0.0.1:${(searx.address() as AddressInfo).port}`;
});
afterEach(async () => {
  await new Promise<void>((resolve) => searx.close(() => resolve()));
});

describe("web_search through the CLI", () => {
  it("returns the fake SearXNG's first result title to the model", async () => {
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([{ id: "s", name: "web_search", arguments: { query: "common raven" } }])
            : message("Done."),
      }),
    );
    const result = await runCli(
      h.runArgs(
        "--id",
        "search",
        "--max-ticks",
        "1",
        "--search-provider",
        "searxng",
        "--search-url",
        searxUrl,
      ),
      { cwd: h.workdir, env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(queries).toEqual(["/search?q=common+raven&format=json"]);
    const reply = toolReplies(h.server.chatRequests()).get("s") ?? "";
    expect(reply).toContain('<data origin="tool:web_search">');
    expect(reply).toContain("1. Corvus corax, the common raven\n   https://birds.example/raven");
  });

  it("brave: sends the key from the named variable, which never reaches the state, journal or model", async () => {
    const key = "brave-secret-KEY-0123456789";
    const brave = createServer((req, res) => {
      queries.push(String(req.headers["x-subscription-token"]));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          web: { results: [{ title: `Echo ${key}`, url: "https://a.example/", description: "x" }] },
        }),
      );
    });
    await new Promise<void>((resolve) => brave.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(brave.address() as AddressInfo).port}/res/v1/web/search`;
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([{ id: "b", name: "web_search", arguments: { query: "ravens" } }])
            : message("Done."),
      }),
    );
    try {
      const result = await runCli(
        h.runArgs(
          "--id",
          "brave",
          "--max-ticks",
          "1",
          "--search-provider",
          "brave",
          "--search-url",
          url,
          "--search-key-env",
          "MY_BRAVE_KEY",
        ),
        { cwd: h.workdir, env: env({ MY_BRAVE_KEY: key }) },
      );
      expect(result.code, result.stderr).toBe(0);
    } finally {
      await new Promise<void>((resolve) => brave.close(() => resolve()));
    }
    expect(queries).toEqual([key]);
    const reply = toolReplies(h.server.chatRequests()).get("b") ?? "";
    expect(reply).toContain("1. Echo [redacted]");
    const state = JSON.stringify(await h.stateOf("brave"));
    expect(state).toContain("MY_BRAVE_KEY");
    expect(state).not.toContain(key);
    expect(JSON.stringify(await h.journalOf("brave"))).not.toContain(key);
    expect(JSON.stringify(h.server.requests)).not.toContain(key);
  });

  it("is not offered without --search-provider, and exits 2 when brave has no key", async () => {
    h.server.setHandler(scripted({ execute: () => message("Done.") }));
    const plain = await runCli(h.runArgs("--id", "nosearch", "--max-ticks", "1", "--allow-web"), {
      cwd: h.workdir,
      env: env(),
    });
    expect(plain.code, plain.stderr).toBe(0);
    const offered = h.server
      .chatRequests()
      .flatMap((r) =>
        (r.body?.tools ?? []).map((t: { function: { name: string } }) => t.function.name),
      );
    expect(offered).toContain("web_fetch");
    expect(offered).not.toContain("web_search");

    const keyless = await runCli(
      h.runArgs(
        "--id",
        "keyless",
        "--search-provider",
        "brave",
        "--search-key-env",
        "MY_SEARCH_KEY",
      ),
      { cwd: h.workdir, env: env() },
    );
    expect(keyless.code).toBe(2);
    expect(keyless.stderr).toContain("MY_SEARCH_KEY");
  });
});

describeWithChromium("the browser tool through the CLI", () => {
  // A CLI run plus a Chromium launch on a loaded 2-core machine.
  vi.setConfig({ testTimeout: 120_000 });
  let site: Server;
  let port: number;
  const siteHits: string[] = [];
  beforeEach(async () => {
    siteHits.length = 0;
    site = createServer((req, res) => {
      siteHits.push(`${req.headers.host?.split(":")[0]}${req.url}`);
      res.writeHead(200, { "content-type": "text/html" });
      res.end(
        `<title>Roost</title><p>static part</p><script>setTimeout(() => document.body.append("inserted by JavaScript"), 100)</script>`,
      );
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    port = (site.address() as AddressInfo).port;
  });
  afterEach(async () => {
    await new Promise<void>((resolve) => site.close(() => resolve()));
  });

  it("reads JavaScript-inserted text, refuses a host outside --allowed-hosts, closes Chromium at the tick's end", async () => {
    const marker = randomUUID();
    let release: (() => void) | undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let tickTwo = false;
    h.server.setHandler(
      scripted({
        assess: async (n): Promise<Reply> => {
          if (n === 2) {
            // Tick 1 has ended: tick 2's first request waits while the test looks.
            tickTwo = true;
            await held;
          }
          return jsonMessage(DEFAULT_ASSESSMENT);
        },
        execute: (n) =>
          n === 1
            ? toolCalls([
                {
                  id: "open",
                  name: "browser",
                  arguments: { action: "open", url: `http://127.0.0.1:${port}/` },
                },
                { id: "text", name: "browser", arguments: { action: "text" } },
                {
                  id: "away",
                  name: "browser",
                  arguments: { action: "open", url: `http://localhost:${port}/` },
                },
              ])
            : message("Done."),
      }),
    );
    const run = startCli(
      h.runArgs("--id", "browse", "--max-ticks", "2", "--allowed-hosts", "127.0.0.1"),
      { cwd: h.workdir, env: env({ BROWSER_TEST_RUN: marker }) },
    );
    try {
      await expect.poll(() => tickTwo, { timeout: 90_000 }).toBe(true);
      // A tick that used the browser ends with Chromium closed (the CLI itself aside).
      const left = await processesWithEnv("BROWSER_TEST_RUN", marker);
      expect(left.filter((pid) => pid !== run.child.pid)).toEqual([]);
      release?.();
      const result = await run.exited;
      expect(result.code, result.stderr).toBe(0);
    } finally {
      release?.();
      run.child.kill("SIGKILL");
    }
    const replies = toolReplies(h.server.chatRequests());
    expect(replies.get("open")).toContain("Opened http://127.0.0.1");
    expect(replies.get("text")).toContain('<data origin="tool:browser">');
    expect(replies.get("text")).toContain("inserted by JavaScript");
    expect(replies.get("away")).toContain(
      "Refused: the host localhost is not in the allowed hosts (127.0.0.1)",
    );
    expect(siteHits.filter((hit) => hit.startsWith("localhost"))).toEqual([]);
    expect(await processesWithEnv("BROWSER_TEST_RUN", marker)).toEqual([]);
  });

  it("closes Chromium when the run is stopped with SIGTERM mid-tick", async () => {
    const marker = randomUUID();
    let release: (() => void) | undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    h.server.setHandler(
      scripted({
        execute: async (n): Promise<Reply> => {
          if (n === 1) {
            return toolCalls([
              {
                id: "open",
                name: "browser",
                arguments: { action: "open", url: `http://127.0.0.1:${port}/` },
              },
            ]);
          }
          // The model "thinks" while the browser is open: the run is stopped now.
          await held;
          return message("Done.");
        },
      }),
    );
    const run = startCli(
      h.runArgs("--id", "browse-term", "--max-ticks", "3", "--allowed-hosts", "127.0.0.1"),
      { cwd: h.workdir, env: env({ BROWSER_TEST_RUN: marker }) },
    );
    try {
      await expect
        .poll(() => toolReplies(h.server.chatRequests()).get("open") ?? "", { timeout: 60_000 })
        .toContain("Opened http://127.0.0.1");
      const chromium = await processesWithEnv("BROWSER_TEST_RUN", marker);
      expect(chromium.filter((pid) => pid !== run.child.pid).length).toBeGreaterThan(0);
      run.child.kill("SIGTERM");
      const done = await run.exited;
      expect(done.code, done.stderr).toBe(0);
    } finally {
      release?.();
      run.child.kill("SIGKILL");
    }
    expect(await processesWithEnv("BROWSER_TEST_RUN", marker)).toEqual([]);
  });

  it("is not offered when no Chromium is found, with one notice saying how to install it", async () => {
    h.server.setHandler(scripted({ execute: () => message("Done.") }));
    const result = await runCli(
      h.runArgs(
        "--id",
        "nobrowser",
        "--max-ticks",
        "1",
        "--allow-web",
        "--browser-path",
        "/nonexistent/chromium",
      ),
      { cwd: h.workdir, env: env() },
    );
    expect(result.code, result.stderr).toBe(0);
    const notices = result.stderr
      .split("\n")
      .filter((line) => line.includes("browser tool is not offered"));
    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain("apt-get install chromium");
    expect(notices[0]).toContain("--browser-path");
    const offered = h.server
      .chatRequests()
      .flatMap((r) =>
        (r.body?.tools ?? []).map((t: { function: { name: string } }) => t.function.name),
      );
    expect(offered).toContain("web_fetch");
    expect(offered).not.toContain("browser");
  });
});
