/**
 * Inspection and diagrams end to end: the built CLI as a child process, the
 * fake OpenAI server, real files and real sockets on 127.0.0.1.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { HEARTBEAT_STATES } from "../../src/machines/shared.js";
import { DIAGRAM_END, DIAGRAM_START, embeddedDiagram } from "../../src/services/diagram.js";
import { type CliProcess, cleanEnv, runCli, startCli } from "../support/cli.js";
import { jsonMessage, scripted } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const API_KEY = "sk-test-INSPECT-0123456789abcdef";
const GOAL = "Keep NOTES.md summarising the TODOs in this repo";

const h = useCliHarness({
  model: "test-model",
  flags: ["--goal", GOAL, "--max-ticks", "1", "--no-tools"],
});
const { runArgs } = h;
const env = () => cleanEnv({ OPENAI_API_KEY: API_KEY });

type LogEvent = {
  type: string;
  sessionId: string;
  definition?: string;
  snapshot?: { value?: unknown; context?: Record<string, unknown> };
  event?: { type: string };
};

async function readLog(file: string): Promise<LogEvent[]> {
  const text = await fs.readFile(file, "utf8");
  return text
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as LogEvent);
}

/** The URL a process printed (`http://127.0.0.1:<port>/`). */
async function urlOf(cli: CliProcess): Promise<URL> {
  await cli.waitForOutput(/http:\/\/127\.0\.0\.1:\d+\//);
  const match = /http:\/\/127\.0\.0\.1:\d+\//.exec(cli.stdout() + cli.stderr());
  return new URL(match?.[0] ?? "");
}

/** Connects a viewer to the inspector server and collects what it receives. */
function viewer(url: URL) {
  const received: string[] = [];
  const ws = new WebSocket(`ws://${url.host}`);
  ws.on("message", (data) => received.push(data.toString()));
  const opened = new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
  return { ws, received, opened, closed };
}

async function until(test: () => boolean, what: string, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("run --inspect-log", () => {
  it("leaves Stately inspection events with the machine definition, and never the API key", async () => {
    // The model echoes the key: the sanitizer must still keep it out of the log.
    h.server.setHandler(
      scripted({
        assess: () =>
          jsonMessage({
            goalComplete: false,
            actionNeeded: true,
            assessment: `Configured with ${API_KEY}.`,
            progressSummary: `Key ${API_KEY} seen. ${"x".repeat(5_000)}`,
          }),
      }),
    );
    const log = path.join(h.workdir, "inspect.jsonl");
    const result = await runCli(runArgs("--id", "i1", "--inspect-log", log), { env: env() });
    expect(result.stderr).not.toContain("error");
    expect(result.code).toBe(0);

    const text = await fs.readFile(log, "utf8");
    expect(text).not.toContain(API_KEY);
    expect(text).not.toContain(API_KEY.slice(0, 16));
    expect(text).toContain("[redacted]");
    const events = await readLog(log);
    const types = new Set(events.map((e) => e.type));
    expect(types).toEqual(new Set(["@xstate.actor", "@xstate.snapshot", "@xstate.event"]));

    const root = events.find(
      (e) => e.type === "@xstate.actor" && e.definition?.includes('"id":"heartbeat"'),
    );
    const definition = JSON.parse(root?.definition ?? "{}") as { states?: Record<string, unknown> };
    // Stately serializes the definition with sorted keys.
    expect(Object.keys(definition.states ?? {}).sort()).toEqual([...HEARTBEAT_STATES].sort());

    const states = events
      .filter((e) => e.type === "@xstate.snapshot" && e.sessionId === root?.sessionId)
      .map((e) => e.snapshot?.value);
    expect(states).toEqual(
      expect.arrayContaining(["assessing", "planning", "persisting", "completed"]),
    );
    expect(events.some((e) => e.event?.type === "xstate.done.actor.assess")).toBe(true);
    // Large context strings are cut to 2 KB.
    for (const e of events.filter((x) => x.type === "@xstate.snapshot")) {
      const progress = e.snapshot?.context?.progress;
      if (typeof progress === "string") expect(progress.length).toBeLessThanOrEqual(2_048);
    }

    // A second run appends to the same log.
    const again = await runCli(runArgs("--id", "i2", "--inspect-log", log), { env: env() });
    expect(again.code).toBe(0);
    expect((await readLog(log)).length).toBeGreaterThan(events.length);
  });

  it("fails with exit 2 naming the file when the log cannot be written", async () => {
    const log = path.join(h.workdir, "missing-dir", "inspect.jsonl");
    const result = await runCli(runArgs("--inspect-log", log), { env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(log);
    expect(h.server.chatRequests()).toHaveLength(0);
  });
});

describe("run --inspect", () => {
  it("prints the inspector URL, streams the run to a viewer, and exits cleanly after --max-ticks 1", async () => {
    let release: () => void = () => {};
    const viewerReady = new Promise<void>((resolve) => {
      release = resolve;
    });
    h.server.setHandler(
      scripted({
        // Hold the first model call until the viewer is connected.
        assess: async () => {
          await viewerReady;
          return jsonMessage({
            goalComplete: false,
            actionNeeded: true,
            assessment: "Work remains.",
            progressSummary: "Some progress.",
          });
        },
      }),
    );
    const started = Date.now();
    const cli = startCli(runArgs("--inspect", "--inspect-port", "0"), { env: env() });
    const url = await urlOf(cli);
    expect(cli.stderr()).toContain("--open");

    const page = await fetch(url);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain("https://stately.ai/inspect");
    expect(html).toContain(`ws://${url.host}`);

    const v = viewer(url);
    await v.opened;
    release();
    const result = await cli.exited;
    expect(result.stderr).not.toContain("error");
    expect(result.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
    await v.closed;
    const events = v.received.map((m) => JSON.parse(m) as LogEvent);
    expect(
      events.some((e) => e.type === "@xstate.actor" && e.definition?.includes("heartbeat")),
    ).toBe(true);
    const values = events
      .filter((e) => e.type === "@xstate.snapshot")
      .map((e) => e.snapshot?.value);
    expect(values).toEqual(expect.arrayContaining(["assessing", "persisting", "completed"]));
    expect(v.received.join("\n")).not.toContain(API_KEY);
  });

  it("exits cleanly with no viewer at all", async () => {
    const started = Date.now();
    const result = await runCli(runArgs("--inspect", "--inspect-port", "0"), { env: env() });
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/inspector at http:\/\/127\.0\.0\.1:\d+\//);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it("refuses a port in use with exit 2 naming --inspect-port", async () => {
    const { createServer } = await import("node:net");
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const result = await runCli(runArgs("--inspect-port", String(port)), { env: env() });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("--inspect-port");
      expect(result.stderr).toContain(String(port));
      expect(h.server.chatRequests()).toHaveLength(0);
    } finally {
      busy.close();
    }
  });
});

describe("inspect replay", () => {
  it("serves every captured event to a viewer and exits with --once", async () => {
    const log = path.join(h.workdir, "inspect.jsonl");
    const run = await runCli(runArgs("--inspect-log", log), { env: env() });
    expect(run.code).toBe(0);
    const lines = (await fs.readFile(log, "utf8")).trim().split("\n");

    const cli = startCli(["inspect", "replay", log, "--port", "0", "--once"], { env: env() });
    const url = await urlOf(cli);
    expect(cli.stdout().trim()).toBe(url.href);
    await cli.waitForOutput(`serving ${lines.length} inspection events from ${log}`);
    const v = viewer(url);
    await v.opened;
    await until(() => v.received.length === lines.length, `${lines.length} events`);
    const result = await cli.exited;
    expect(result.code).toBe(0);
    expect(v.received).toEqual(lines);
  });

  it("keeps serving until SIGTERM, to every viewer that connects", async () => {
    const log = path.join(h.workdir, "inspect.jsonl");
    await runCli(runArgs("--inspect-log", log), { env: env() });
    const count = (await fs.readFile(log, "utf8")).trim().split("\n").length;
    const cli = startCli(["inspect", "replay", log, "--port", "0"], { env: env() });
    const url = await urlOf(cli);
    for (let i = 0; i < 2; i++) {
      const v = viewer(url);
      await v.opened;
      await until(() => v.received.length === count, `${count} events for viewer ${i + 1}`);
      v.ws.close();
    }
    cli.child.kill("SIGTERM");
    const result = await cli.exited;
    expect(result.code).toBe(0);
  });

  it("rejects a bad log with exit 2, naming the file and the line", async () => {
    const log = path.join(h.workdir, "bad.jsonl");
    await fs.writeFile(
      log,
      `${JSON.stringify({ type: "@xstate.event", sessionId: "x0", event: { type: "a" } })}\n\n{not json\n`,
    );
    const result = await runCli(["inspect", "replay", log, "--port", "0"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${log}:3 is not JSON`);

    await fs.writeFile(log, `${JSON.stringify({ type: "something" })}\n`);
    const notEvent = await runCli(["inspect", "replay", log, "--port", "0"]);
    expect(notEvent.code).toBe(2);
    expect(notEvent.stderr).toContain(`${log}:1 is not an inspection event`);

    const missing = await runCli(["inspect", "replay", path.join(h.workdir, "nope.jsonl")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(path.join(h.workdir, "nope.jsonl"));
  });
});

describe("diagram", () => {
  it("prints a Mermaid stateDiagram-v2 naming all nine states", async () => {
    const result = await runCli(["diagram", "--format", "mermaid"]);
    expect(result.code).toBe(0);
    expect(result.stdout.startsWith("stateDiagram-v2\n")).toBe(true);
    for (const state of HEARTBEAT_STATES)
      expect(result.stdout).toMatch(new RegExp(`\\b${state}\\b`));
    expect(result.stdout).toContain("state executing {");
    // The default format is Mermaid.
    expect((await runCli(["diagram"])).stdout).toBe(result.stdout);
  });

  it("prints the machine definitions as JSON", async () => {
    const result = await runCli(["diagram", "--format", "json"]);
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as Record<string, { id: string; states: object }>;
    expect(Object.keys(json)).toEqual(["heartbeat", "toolLoop"]);
    expect(Object.keys(json.heartbeat?.states ?? {})).toEqual([...HEARTBEAT_STATES]);
  });

  it("refuses an unknown format with exit 2", async () => {
    const result = await runCli(["diagram", "--format", "svg"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("svg");
  });

  it("--embed replaces the diagram between the markers of a Markdown file", async () => {
    const file = path.join(h.workdir, "DOC.md");
    await fs.writeFile(file, `# Doc\n\n${DIAGRAM_START}\nold\n${DIAGRAM_END}\n\nAfter.\n`);
    const result = await runCli(["diagram", "--embed", file]);
    expect(result.code).toBe(0);
    const text = await fs.readFile(file, "utf8");
    expect(embeddedDiagram(text)).toBe((await runCli(["diagram"])).stdout);
    expect(text.startsWith("# Doc\n\n")).toBe(true);
    expect(text.endsWith(`${DIAGRAM_END}\n\nAfter.\n`)).toBe(true);

    await fs.writeFile(file, "no markers\n");
    const noMarkers = await runCli(["diagram", "--embed", file]);
    expect(noMarkers.code).toBe(2);
    expect(noMarkers.stderr).toContain(DIAGRAM_START);
  });
});
