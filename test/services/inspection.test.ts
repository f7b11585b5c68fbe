/**
 * Inspection: the sanitizer, the JSON-lines log adapter, the inspector server
 * and the live WebSocket inspector, with real actors, files and sockets on
 * 127.0.0.1.
 */
import { readFileSync } from "node:fs";
import * as fs from "node:fs/promises";
import { createServer } from "node:net";
import * as path from "node:path";
import { createInspector, type StatelyInspectionEvent } from "@statelyai/inspect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import {
  assign,
  createActor,
  fromPromise,
  type InspectionEvent,
  type Observer,
  setup,
  toPromise,
} from "xstate";
import { UsageError } from "../../src/errors.js";
import {
  DEFAULT_INSPECT_PORT,
  INSPECT_ARRAY_LIMIT,
  INSPECT_STRING_LIMIT,
  type InspectorServer,
  inspectionRequestOf,
  JsonLinesAdapter,
  openInBrowser,
  readInspectionLog,
  sanitizeInspectionEvent,
  sanitizeValue,
  serializeInspectionEvent,
  startInspection,
  startInspectorServer,
} from "../../src/services/inspection/index.js";
import { createRedactor } from "../../src/services/redact.js";
import { tempDir } from "../support/cli.js";

const SECRET = "sk-test-SECRET-0123456789abcdef";
const redact = createRedactor([SECRET]);

let dir: string;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** A small machine with a child actor, a secret and a large value in its context. */
const demoMachine = setup({
  types: { context: {} as { note: string; items: number[]; n: number } },
  actors: { work: fromPromise(async ({ input }: { input: { n: number } }) => input.n * 2) },
}).createMachine({
  id: "demo",
  context: { note: `key ${SECRET} ${"y".repeat(10_000)}`, items: [], n: 0 },
  initial: "waiting",
  states: {
    waiting: { on: { go: "working" } },
    working: {
      invoke: {
        id: "work",
        src: "work",
        input: ({ context }) => ({ n: context.n + 21 }),
        onDone: {
          target: "done",
          actions: assign({
            n: ({ event }) => event.output,
            items: () => Array.from({ length: 500 }, (_, i) => i),
          }),
        },
      },
    },
    done: { type: "final" },
  },
});

async function runDemo(options: { inspect: Observer<InspectionEvent> }) {
  const actor = createActor(demoMachine, options);
  actor.start();
  actor.send({ type: "go" });
  await toPromise(actor);
  // The inspectors convert events in a later macrotask.
  await new Promise((resolve) => setTimeout(resolve, 20));
  return actor;
}

function client(url: string, headers?: Record<string, string>) {
  const received: string[] = [];
  const ws = new WebSocket(url, headers ? { headers } : {});
  ws.on("message", (data) => received.push(data.toString()));
  const opened = new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  return { ws, received, opened };
}

async function until(test: () => boolean, what: string, timeoutMs = 5_000) {
  const end = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("sanitizeValue", () => {
  it("redacts secrets in nested strings and keys", () => {
    const out = sanitizeValue(
      { a: [{ b: `x ${SECRET} y` }], [SECRET]: 1, n: 2, ok: true, none: null },
      { redact },
    );
    expect(out).toEqual({
      a: [{ b: "x [redacted] y" }],
      "[redacted]": 1,
      n: 2,
      ok: true,
      none: null,
    });
  });

  it("cuts long strings to the limit with a marker, and is idempotent", () => {
    const long = "z".repeat(10_000);
    const out = sanitizeValue({ long }) as { long: string };
    expect(out.long.length).toBeLessThanOrEqual(INSPECT_STRING_LIMIT);
    expect(out.long).toMatch(/^z+… \[\d+ more characters\]$/);
    const omitted = Number(/\[(\d+) more/.exec(out.long)?.[1]);
    expect(out.long.indexOf("…") + omitted).toBe(10_000);
    expect(sanitizeValue(out)).toEqual(out);
    expect(sanitizeValue({ s: "short" })).toEqual({ s: "short" });
  });

  it("redacts before cutting, so a cut never leaves part of a secret", () => {
    const at = INSPECT_STRING_LIMIT - 40;
    const text = `${"a".repeat(at)}${SECRET}${"b".repeat(5_000)}`;
    const out = sanitizeValue(text, { redact }) as string;
    expect(out).not.toContain(SECRET.slice(0, 8));
  });

  it("cuts long arrays and says how many items were left out", () => {
    const out = sanitizeValue(Array.from({ length: 120 }, (_, i) => i)) as unknown[];
    expect(out).toHaveLength(INSPECT_ARRAY_LIMIT + 1);
    expect(out.at(-1)).toBe(`… [${120 - INSPECT_ARRAY_LIMIT} more items]`);
    expect(out.slice(0, 3)).toEqual([0, 1, 2]);
  });

  it("survives cycles, deep nesting, errors, functions, bigints, maps, sets and toJSON", () => {
    const cyclic: Record<string, unknown> = { name: "c" };
    cyclic.self = cyclic;
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 40; i++) deep = { deep };
    const out = sanitizeValue(
      {
        cyclic,
        deep,
        error: Object.assign(new Error(`failed with ${SECRET}`), { code: "E_X" }),
        fn: () => 1,
        big: 10n,
        map: new Map([["k", 1]]),
        set: new Set([1, 2]),
        date: new Date(0),
        nan: Number.NaN,
        shared: [cyclic, cyclic],
      },
      { redact },
    ) as Record<string, unknown>;
    expect(out.cyclic).toEqual({ name: "c", self: "[Circular]" });
    expect(JSON.stringify(out.deep)).toContain("[Truncated: too deep]");
    expect(out.error).toEqual({ name: "Error", message: "failed with [redacted]", code: "E_X" });
    expect("fn" in out).toBe(false);
    expect(out.big).toBe("10");
    expect(out.map).toEqual({ k: 1 });
    expect(out.set).toEqual([1, 2]);
    expect(out.date).toBe("1970-01-01T00:00:00.000Z");
    expect(out.nan).toBeNull();
    // The same object twice (not a cycle) is kept twice.
    expect(out.shared).toEqual([out.cyclic, out.cyclic]);
    expect(() => JSON.stringify(out)).not.toThrow();
  });
});

describe("sanitizeInspectionEvent", () => {
  it("keeps the machine definition whole but redacted, and cleans the rest", () => {
    const definition = JSON.stringify({ id: "m", note: SECRET, pad: "d".repeat(10_000) });
    const event = {
      type: "@xstate.actor",
      name: "m",
      sessionId: "x:0",
      createdAt: "0",
      _version: "0.7.2",
      rootId: "x:0",
      parentId: undefined,
      id: null,
      definition,
      snapshot: { status: "active", context: { text: "t".repeat(5_000), key: SECRET } },
    } as unknown as StatelyInspectionEvent;
    const clean = sanitizeInspectionEvent(event, { redact }) as unknown as {
      definition: string;
      snapshot: { context: { text: string; key: string } };
    };
    expect(clean.definition).toBe(definition.replace(SECRET, "[redacted]"));
    expect(clean.snapshot.context.key).toBe("[redacted]");
    expect(clean.snapshot.context.text.length).toBeLessThanOrEqual(INSPECT_STRING_LIMIT);
    const line = serializeInspectionEvent(event, { redact });
    expect(line).not.toContain(SECRET);
    expect(JSON.parse(line).type).toBe("@xstate.actor");
  });
});

describe("JsonLinesAdapter", () => {
  it("logs a real actor's inspection events as Stately JSON lines, sanitized", async () => {
    const file = path.join(dir, "log.jsonl");
    const adapter = new JsonLinesAdapter(file, { redact });
    const inspector = createInspector(adapter, {
      serialize: (e) => sanitizeInspectionEvent(e, { redact }),
    });
    await runDemo({ inspect: inspector.inspect });
    adapter.stop();

    const text = await fs.readFile(file, "utf8");
    expect(text).not.toContain(SECRET);
    const events = text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const actors = events.filter((e) => e.type === "@xstate.actor");
    expect(actors.map((a) => a.name)).toEqual(["demo", "work"]);
    expect(JSON.parse(actors[0].definition).states).toHaveProperty("working");
    const snapshots = events.filter(
      (e) => e.type === "@xstate.snapshot" && e.sessionId === actors[0].sessionId,
    );
    expect(snapshots.map((s) => s.snapshot.value)).toEqual(["waiting", "working", "done"]);
    const last = snapshots.at(-1).snapshot.context;
    expect(last.n).toBe(42);
    expect(last.items).toHaveLength(INSPECT_ARRAY_LIMIT + 1);
    expect(last.note.length).toBeLessThanOrEqual(INSPECT_STRING_LIMIT);
    expect(last.note.startsWith("key [redacted] yyy")).toBe(true);
    expect(events.some((e) => e.type === "@xstate.event" && e.event.type === "go")).toBe(true);
    expect(
      events.some((e) => e.type === "@xstate.event" && e.event.type === "xstate.done.actor.work"),
    ).toBe(true);
  });

  it("appends to an existing file", async () => {
    const file = path.join(dir, "log.jsonl");
    await fs.writeFile(file, "first\n");
    const adapter = new JsonLinesAdapter(file);
    adapter.send({ type: "@xstate.event", sessionId: "s", event: { type: "e" } } as never);
    adapter.stop();
    adapter.stop();
    const lines = (await fs.readFile(file, "utf8")).trim().split("\n");
    expect(lines[0]).toBe("first");
    expect(JSON.parse(lines[1] ?? "")).toMatchObject({ sessionId: "s", event: { type: "e" } });
  });

  it("refuses a file it cannot open with a UsageError naming it", () => {
    const file = path.join(dir, "no-such-dir", "log.jsonl");
    expect(() => new JsonLinesAdapter(file)).toThrow(UsageError);
    expect(() => new JsonLinesAdapter(file)).toThrow(file);
  });
});

describe("startInspectorServer", () => {
  let server: InspectorServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("listens on 127.0.0.1 (port 0 = any free port) and serves the bridge page", async () => {
    server = await startInspectorServer({ port: 0 });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/`);
    expect(server.port).toBeGreaterThan(0);
    const page = await fetch(server.url);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('src="https://stately.ai/inspect"');
    expect(html).toContain(JSON.stringify(server.wsUrl));
    expect((await fetch(`${server.url}other`)).status).toBe(404);
  });

  it("sends kept messages to a client that connects later, in order, then live ones; relays between clients", async () => {
    server = await startInspectorServer({ port: 0 });
    server.publish('{"type":"@xstate.actor","n":1}');
    server.publish('{"type":"@xstate.snapshot","n":2}');
    const viewer = client(server.wsUrl);
    await viewer.opened;
    await server.served();
    await until(() => viewer.received.length === 2, "the backlog");
    const source = client(server.wsUrl);
    await source.opened;
    source.ws.send('{"type":"@xstate.event","n":3}');
    await until(() => viewer.received.length === 3, "the relayed message");
    expect(viewer.received.map((m) => JSON.parse(m).n)).toEqual([1, 2, 3]);
    // The sender does not get its own message back (only the backlog from before
    // it connected). Proof without a sleep: a message the viewer sends after it
    // got 3 reaches the sender after any echo of 3 would have (one ordered socket).
    viewer.ws.send('{"type":"@xstate.event","n":4}');
    await until(() => source.received.length >= 3, "the viewer's message");
    expect(source.received.map((m) => JSON.parse(m).n)).toEqual([1, 2, 4]);
    viewer.ws.close();
    source.ws.close();
  });

  it("keeps actor messages apart from the bounded rest", async () => {
    server = await startInspectorServer({ port: 0, retain: { actors: 2, events: 3 } });
    server.publish('{"type":"@xstate.actor","n":0}');
    for (let n = 1; n <= 10; n++) server.publish(`{"type":"@xstate.snapshot","n":${n}}`);
    const viewer = client(server.wsUrl);
    await viewer.opened;
    await until(() => viewer.received.length === 4, "the backlog");
    expect(viewer.received.map((m) => JSON.parse(m).n)).toEqual([0, 8, 9, 10]);
    viewer.ws.close();
  });

  it("refuses WebSocket connections from other web origins", async () => {
    server = await startInspectorServer({ port: 0 });
    const evil = client(server.wsUrl, { Origin: "https://evil.example" });
    await expect(evil.opened).rejects.toThrow(/401|403/);
    const own = client(server.wsUrl, { Origin: `http://127.0.0.1:${server.port}` });
    await own.opened;
    own.ws.close();
  });

  it("turns a port in use into a UsageError naming the option", async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const error = await startInspectorServer({ port, portOption: "--port" }).catch((e) => e);
      expect(error).toBeInstanceOf(UsageError);
      expect(error.option).toBe("--port");
      expect(error.code).toBe("inspect-port-unavailable");
      expect(error.message).toContain(String(port));
    } finally {
      busy.close();
    }
  });

  it("close() disconnects clients and frees the port", async () => {
    server = await startInspectorServer({ port: 0 });
    const viewer = client(server.wsUrl);
    await viewer.opened;
    const closed = new Promise((resolve) => viewer.ws.once("close", resolve));
    const port = server.port;
    await server.close();
    await closed;
    server = await startInspectorServer({ port });
    expect(server.port).toBe(port);
  });
});

describe("startInspection", () => {
  it("streams a live actor to a viewer through createWebSocketInspector, and closes every handle", async () => {
    const handlesBefore = process
      .getActiveResourcesInfo()
      .filter((r) => r.startsWith("TCP")).length;
    const notes: string[] = [];
    const inspection = await startInspection(
      { live: { port: 0, open: false }, logFile: path.join(dir, "both.jsonl") },
      { redact, note: (t) => notes.push(t) },
    );
    const url = inspection.url ?? "";
    expect(notes.join("\n")).toContain(`inspector at ${url}`);
    const viewer = client(`ws://${new URL(url).host}`);
    await viewer.opened;
    await runDemo({ inspect: inspection.inspect });
    await until(
      () => viewer.received.some((m) => m.includes('"value":"done"')),
      "the final snapshot",
    );
    viewer.ws.close();
    await inspection.close();
    await inspection.close();

    const received = viewer.received.map((m) => JSON.parse(m));
    expect(received[0].type).toBe("@xstate.actor");
    expect(viewer.received.join("\n")).not.toContain(SECRET);
    const logged = (await fs.readFile(path.join(dir, "both.jsonl"), "utf8")).trim().split("\n");
    expect(logged.length).toBe(received.length);

    await until(
      () =>
        process.getActiveResourcesInfo().filter((r) => r.startsWith("TCP")).length <= handlesBefore,
      "sockets to close",
    );
  });

  it("logs without a server when only a file is asked for", async () => {
    const file = path.join(dir, "only.jsonl");
    const inspection = await startInspection(
      { live: null, logFile: file },
      { redact, note: () => {} },
    );
    expect(inspection.url).toBeNull();
    await runDemo({ inspect: inspection.inspect });
    await inspection.close();
    expect((await fs.readFile(file, "utf8")).split("\n").length).toBeGreaterThan(5);
  });
});

describe("inspectionRequestOf", () => {
  it("reads the flags; --open and --inspect-port imply --inspect", () => {
    expect(inspectionRequestOf({}, "/w")).toBeNull();
    expect(inspectionRequestOf({ inspect: true }, "/w")).toEqual({
      live: { port: DEFAULT_INSPECT_PORT, open: false },
      logFile: null,
    });
    expect(inspectionRequestOf({ open: true }, "/w")?.live).toEqual({
      port: DEFAULT_INSPECT_PORT,
      open: true,
    });
    expect(inspectionRequestOf({ inspectPort: 0 }, "/w")?.live).toEqual({ port: 0, open: false });
    expect(inspectionRequestOf({ inspectLog: "x.jsonl" }, "/w")).toEqual({
      live: null,
      logFile: path.resolve("/w", "x.jsonl"),
    });
  });

  it("rejects a bad port or an empty log name", () => {
    for (const inspectPort of [-1, 70_000, 1.5, Number.NaN]) {
      expect(() => inspectionRequestOf({ inspectPort }, "/w")).toThrow(/--inspect-port/);
    }
    expect(() => inspectionRequestOf({ inspectLog: " " }, "/w")).toThrow(/--inspect-log/);
  });
});

describe("readInspectionLog", () => {
  it("reads the events, skipping blank lines", async () => {
    const file = path.join(dir, "ok.jsonl");
    const a = JSON.stringify({ type: "@xstate.actor", sessionId: "x:0", definition: "{}" });
    const b = JSON.stringify({ type: "@xstate.snapshot", sessionId: "x:0", snapshot: {} });
    await fs.writeFile(file, `${a}\n\n${b}\n`);
    expect(await readInspectionLog(file)).toEqual([a, b]);
  });

  it("names the file and line of a bad entry", async () => {
    const file = path.join(dir, "bad.jsonl");
    await fs.writeFile(file, `${JSON.stringify({ type: "@xstate.event", sessionId: "s" })}\n[1]\n`);
    await expect(readInspectionLog(file)).rejects.toThrow(`${file}:2 is not an inspection event`);
    await fs.writeFile(file, "");
    await expect(readInspectionLog(file)).rejects.toThrow(`${file} has no events`);
  });
});

describe("openInBrowser", () => {
  it("runs the platform's opener, detached, and ignores a missing one (reporting which)", async () => {
    const bin = path.join(dir, "bin");
    await fs.mkdir(bin);
    const out = path.join(dir, "opened.txt");
    await fs.writeFile(path.join(bin, "xdg-open"), `#!/bin/sh\necho "$@" > "${out}"\n`, {
      mode: 0o755,
    });
    const oldPath = process.env.PATH;
    process.env.PATH = bin;
    try {
      expect(await openInBrowser("http://127.0.0.1:1/", "linux")).toBe(true);
      await until(() => {
        try {
          return readFileSync(out, "utf8").trim() === "http://127.0.0.1:1/";
        } catch {
          return false;
        }
      }, "the opener to run");
      // No `open` on this PATH: the spawn failure is known and handled, nothing thrown.
      expect(await openInBrowser("http://127.0.0.1:1/", "darwin")).toBe(false);
    } finally {
      process.env.PATH = oldPath;
    }
  });
});
