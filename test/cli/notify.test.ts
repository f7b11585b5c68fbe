/**
 * Issue 13, acceptance 3: the built CLI against the fake OpenAI server, with
 * `--notify-url http://127.0.0.1:<port>/hook` (a real HTTP receiver): a
 * `completed` event for a heartbeat whose goal is met, a `failed` event for
 * one that fails, nothing for ordinary ticks, the bearer token from the
 * variable `--notify-token-env` names, and the API key in no payload.
 */
import * as fs from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import { errorReply, jsonMessage, message, scripted, toolCalls } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const API_KEY = "sk-notify-cli-key-0123456789";
const TOKEN = "hook-token-abcdef-987654";
const h = useCliHarness({ model: "test-model", flags: ["--failure-backoff", "0"] });

interface Hit {
  path: string;
  headers: IncomingMessage["headers"];
  raw: string;
  // biome-ignore lint/suspicious/noExplicitAny: the event JSON.
  body: any;
}

let hits: Hit[];
let hookServer: Server;
let hookUrl: string;

beforeEach(async () => {
  hits = [];
  hookServer = createServer((req, res) => {
    let raw = "";
    req.on("data", (c: Buffer) => {
      raw += c.toString();
    });
    req.on("end", () => {
      const body = JSON.parse(raw);
      hits.push({ path: req.url ?? "", headers: req.headers, raw, body });
      // A slow receiver at the end: the run must wait for the answer before it exits.
      const end = body.event === "completed" || body.event === "failed";
      setTimeout(() => res.writeHead(200).end("ok"), end ? 700 : 0);
    });
  });
  await new Promise<void>((resolve) => hookServer.listen(0, "127.0.0.1", resolve));
  hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/hook`;
});
afterEach(async () => {
  hookServer.closeAllConnections();
  await new Promise((resolve) => hookServer.close(resolve));
});

const assessment = (over: Record<string, unknown>) =>
  jsonMessage({
    goalComplete: false,
    actionNeeded: false,
    assessment: "Nothing to do.",
    progressSummary: "Notes are current.",
    ...over,
  });

describe("--notify-url", () => {
  it("a heartbeat whose goal is met: attention and completed, nothing for ordinary ticks; token from the env var, no API key", async () => {
    h.server.setHandler(
      scripted({
        assess: (n) =>
          n === 1
            ? assessment({})
            : n === 2
              ? assessment({ actionNeeded: true, assessment: "A note is missing." })
              : n === 3
                ? assessment({ attention: `Someone pasted ${API_KEY} into NOTES.md.` })
                : assessment({ goalComplete: true, assessment: "All notes are current." }),
        plan: () => jsonMessage({ steps: ["Add the note"] }),
        execute: () => message("Added the missing note."),
      }),
    );
    const result = await runCli(
      h.runArgs(
        "--id",
        "met",
        "--goal",
        "Keep NOTES.md current",
        "--notify-url",
        hookUrl,
        "--notify-token-env",
        "HOOK_TOKEN",
        // Every tick asks the model (no quiet ticks after the idle one); a bound in case it never ends.
        "--idle-recheck",
        "0",
        "--max-ticks",
        "6",
      ),
      { env: cleanEnv({ OPENAI_API_KEY: API_KEY, HOOK_TOKEN: TOKEN }) },
    );
    expect(result.code, result.stderr).toBe(0);

    // Ticks 1 (idle) and 2 (busy, ok) sent nothing.
    expect(hits.map((hit) => [hit.body.event, hit.body.tick])).toEqual([
      ["attention", 3],
      ["completed", 4],
    ]);
    for (const hit of hits) {
      expect(hit.path).toBe("/hook");
      expect(hit.headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(hit.raw).not.toContain(API_KEY);
    }
    expect(hits[0]?.body.attention).toBe("Someone pasted [redacted] into NOTES.md.");
    expect(hits[1]?.body).toMatchObject({
      event: "completed",
      heartbeatId: "met",
      goal: "Keep NOTES.md current",
      status: "completed",
      reason: "goal-met",
      tick: 4,
    });
    expect(hits[1]?.body.text).toBe(
      "ravenclaws: heartbeat met completed (goal-met) at tick 4: Keep NOTES.md current",
    );
    expect(Date.parse(hits[1]?.body.time)).not.toBeNaN();

    // Each delivery is journaled (the last one answered after the run's end:
    // the process waited for it); no secret anywhere on disk or in the output.
    const journal = await h.journalOf("met");
    expect(journal.filter((e) => e.type === "notify").map((e) => e.event)).toEqual([
      "attention",
      "completed",
    ]);
    const logs = await runCli(["logs", "met", "--workdir", h.workdir], { env: cleanEnv() });
    expect(logs.stdout).toMatch(/notify .* completed to http:\/\/127\.0\.0\.1:\d+: sent/);
    const everything = [
      result.stdout,
      result.stderr,
      await fs.readFile(h.journalFile("met"), "utf8"),
      await fs.readFile(h.stateFile("met"), "utf8"),
    ].join("\n");
    expect(everything).not.toContain(API_KEY);
    expect(everything).not.toContain(TOKEN);
  }, 60_000);

  it("a heartbeat that fails: a failed event (and the command gets it too, without the API key)", async () => {
    h.server.setHandler(() =>
      errorReply(401, { message: `Incorrect API key provided: ${API_KEY}` }),
    );
    const out = path.join(h.root, "event.json");
    const envOut = path.join(h.root, "env.txt");
    const result = await runCli(
      h.runArgs(
        "--id",
        "broken",
        "--goal",
        "Keep NOTES.md current",
        "--notify-url",
        hookUrl,
        "--notify-command",
        `cat > '${out}'; env > '${envOut}'`,
      ),
      { env: cleanEnv({ OPENAI_API_KEY: API_KEY }) },
    );
    expect(result.code, result.stderr).toBe(1);
    expect(hits.map((hit) => hit.body.event)).toEqual(["failed"]);
    const event = hits[0]?.body;
    expect(event).toMatchObject({ heartbeatId: "broken", status: "failed", reason: "llm-auth" });
    expect(event.error.code).toMatch(/auth/);
    expect(hits[0]?.headers.authorization).toBeUndefined();
    expect(hits[0]?.raw).not.toContain(API_KEY);
    expect(JSON.parse(await fs.readFile(out, "utf8"))).toEqual(event);
    const env = await fs.readFile(envOut, "utf8");
    expect(env).not.toContain(API_KEY);
    expect(env).toMatch(/^PATH=/m);
  }, 60_000);

  it("a call an ask rule holds: approval-needed with the calls and the approve command, then completed once approved", async () => {
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                { id: "w1", name: "write_file", arguments: { path: "out.md", content: "hello" } },
              ])
            : message("Wrote out.md."),
      }),
    );
    const run = startCli(
      h.runArgs(
        "--id",
        "ap",
        "--goal",
        "Write out.md",
        "--max-ticks",
        "1",
        "--ask",
        "write(**)",
        "--notify-url",
        hookUrl,
      ),
      { cwd: h.workdir, env: cleanEnv({ OPENAI_API_KEY: API_KEY }) },
    );
    const deadline = Date.now() + 30_000;
    while (hits.length === 0) {
      if (Date.now() > deadline) throw new Error(`no approval-needed event: ${run.stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(hits[0]?.body).toMatchObject({
      event: "approval-needed",
      heartbeatId: "ap",
      goal: "Write out.md",
      status: "executing",
      approveCommand: "ravenclaws approve ap",
      pending: [{ callId: "w1", tool: "write_file", rule: "write(**)" }],
    });
    expect(hits[0]?.body.text).toContain("ravenclaws approve ap");
    expect(hits[0]?.raw).not.toContain(API_KEY);

    const approve = await runCli(["approve", "ap", "--workdir", h.workdir], { env: cleanEnv() });
    expect(approve.code, approve.stderr).toBe(0);
    const done = await run.exited;
    expect(done.code, done.stderr).toBe(0);
    expect(await fs.readFile(path.join(h.workdir, "out.md"), "utf8")).toBe("hello");
    expect(hits.map((hit) => hit.body.event)).toEqual(["approval-needed", "completed"]);
  }, 90_000);

  it("refuses an unknown --notify-on event, naming the valid ones (exit 2)", async () => {
    const result = await runCli(
      h.runArgs("--goal", "x", "--notify-url", hookUrl, "--notify-on", "completed,finished"),
      { env: cleanEnv() },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/approval-needed, failed, completed, budget, attention, ok/);
  });
});
