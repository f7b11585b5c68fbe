/**
 * The web tools end to end: the built CLI, the fake OpenAI server scripting
 * tool calls, a fake search provider on 127.0.0.1.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cleanEnv, runCli } from "../support/cli.js";
import { message, type RecordedRequest, scripted, toolCalls } from "../support/fakeOpenAI.js";
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
