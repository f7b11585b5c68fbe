import * as fs from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createHost } from "../../src/host/host.js";
import type { Host, HostEvent } from "../../src/host/types.js";
import { decideApproval, listPendingApprovals } from "../../src/services/approvals.js";
import { tempDir } from "../support/cli.js";
import {
  DEFAULT_ASSESSMENT,
  type FakeOpenAI,
  jsonMessage,
  message,
  type Reply,
  scripted,
  startFakeOpenAI,
  toolCalls,
} from "../support/fakeOpenAI.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function setup(handler?: Parameters<typeof startFakeOpenAI>[0]) {
  const fake = await startFakeOpenAI(handler ?? scripted({}));
  cleanups.push(() => fake.close());
  const workdir = await tempDir("ravenclaws-host-");
  cleanups.push(() => fs.rm(workdir, { recursive: true, force: true }));
  const stateDir = path.join(workdir, ".ravenclaws");
  return { fake, workdir, stateDir };
}

async function open(
  place: { fake: FakeOpenAI; workdir: string; stateDir: string },
  max?: number,
): Promise<Host> {
  const host = await createHost({
    stateDir: place.stateDir,
    workdir: place.workdir,
    env: { RAVENCLAWS_CONFIG_DIR: path.join(place.workdir, "no-config") },
    defaults: { baseUrl: place.fake.baseURL, model: "fake", apiKey: undefined },
    ...(max ? { maxConcurrentTicks: max } : {}),
  });
  cleanups.push(() => host.close());
  return host;
}

/** Resolves once `predicate` holds for an event (or the list after it). */
function until(host: Host, predicate: (event: HostEvent) => boolean, timeoutMs = 20_000) {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out; statuses: ${JSON.stringify(host.list())}`));
    }, timeoutMs);
    const off = host.subscribe((event) => {
      if (predicate(event)) {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  });
}

const allDone = (host: Host, n: number) => () =>
  host.list().filter((s) => s.status === "completed").length === n;

const journalTicks = async (stateDir: string, id: string) =>
  (await fs.readFile(path.join(stateDir, `heartbeat-${id}.jsonl`), "utf8"))
    .split("\n")
    .filter((l) => l.includes('"type":"tick"')).length;

describe("host notifications", () => {
  it("a hosted heartbeat notifies like a run: completed to RAVENCLAWS_NOTIFY_URL, delivered before close returns", async () => {
    const hits: Array<{ event: string; heartbeatId: string }> = [];
    const hook = createServer((req, res) => {
      let raw = "";
      req.on("data", (c: Buffer) => {
        raw += c.toString();
      });
      req.on("end", () => {
        hits.push(JSON.parse(raw));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => hook.close(() => resolve())));
    const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    const place = await setup(
      scripted({ assess: () => jsonMessage({ ...DEFAULT_ASSESSMENT, goalComplete: true }) }),
    );
    const host = await createHost({
      stateDir: place.stateDir,
      workdir: place.workdir,
      env: {
        RAVENCLAWS_CONFIG_DIR: path.join(place.workdir, "no-config"),
        RAVENCLAWS_NOTIFY_URL: url,
      },
      defaults: { baseUrl: place.fake.baseURL, model: "fake", apiKey: undefined },
    });
    const done = until(host, allDone(host, 1));
    await host.create({ id: "met", goal: "g", settings: { tickInterval: 0, tools: false } });
    await done;
    await host.close();
    expect(hits.map((h) => [h.event, h.heartbeatId])).toEqual([["completed", "met"]]);
  });
});

describe("host", () => {
  it("runs many heartbeats to completion, never more ticks at once than allowed", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const base = scripted({});
    const place = await setup(async (req, i) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
      return base(req, i) as Reply;
    });
    const host = await open(place, 2);
    const done = until(host, allDone(host, 6));
    for (let i = 0; i < 6; i++) {
      await host.create({
        id: `hb-${i}`,
        goal: `goal ${i}`,
        settings: { tickInterval: 0, maxTicks: 2, tools: false },
      });
    }
    await done;
    expect(maxInFlight).toBeGreaterThan(1);
    expect(maxInFlight).toBeLessThanOrEqual(2);
    for (let i = 0; i < 6; i++) expect(await journalTicks(place.stateDir, `hb-${i}`)).toBe(2);
    const detail = await host.get("hb-3");
    expect(detail?.tick).toBe(2);
    expect(JSON.stringify(detail)).not.toContain("apiKey");
  });

  it("holds no live actor while a heartbeat sleeps, and rehydrates it when due or woken", async () => {
    const place = await setup();
    const host = await open(place);
    const slept = until(
      host,
      (e) => e.type === "state" && e.summary.status === "sleeping" && e.summary.tick === 1,
    );
    await host.create({ id: "sleeper", goal: "g", settings: { tickInterval: 3600, tools: false } });
    await slept;
    // Sleeping means dropped: the summary says so and no request is in flight.
    const [row] = host.list();
    expect(row?.status).toBe("sleeping");
    expect(row?.state).toBe("sleeping");
    expect(host.stats()).toMatchObject({ hosted: 1, live: 0 });
    const before = place.fake.chatRequests().length;
    const woke = until(host, (e) => e.type === "tick" && e.summary.tick === 2);
    await host.wake("sleeper");
    await woke;
    expect(place.fake.chatRequests().length).toBeGreaterThan(before);
    const journal = await fs.readFile(path.join(place.stateDir, "heartbeat-sleeper.jsonl"), "utf8");
    expect(journal).toContain('"wakeReason":"wake"');
  });

  it("a heartbeat stopped on purpose stays stopped across a restart; the others run again", async () => {
    const place = await setup();
    let host = await open(place);
    const both = until(host, () =>
      host.list().every((s) => s.tick >= 1 && s.status === "sleeping"),
    );
    await host.create({ id: "keep", goal: "g", settings: { tickInterval: 3600, tools: false } });
    await host.create({ id: "halt", goal: "g", settings: { tickInterval: 3600, tools: false } });
    await both;
    await host.stop("halt");
    const halted = JSON.parse(
      await fs.readFile(path.join(place.stateDir, "heartbeat-halt.json"), "utf8"),
    );
    expect(halted.status).toBe("shutdown");
    await host.close();
    await expect(fs.stat(path.join(place.stateDir, "heartbeat-keep.lock"))).rejects.toThrow();

    host = await open(place);
    const byId = Object.fromEntries(host.list().map((s) => [s.id, s.status]));
    expect(byId).toEqual({ keep: "sleeping", halt: "stopped" });
    // Hosted again: its lock is held (naming the host's lease); the stopped one holds none.
    const lock = JSON.parse(
      await fs.readFile(path.join(place.stateDir, "heartbeat-keep.lock"), "utf8"),
    );
    expect(lock.lease).toBe("host.lease");
    await expect(fs.stat(path.join(place.stateDir, "heartbeat-halt.lock"))).rejects.toThrow();
    const ticked = until(host, (e) => e.type === "tick" && e.id === "halt");
    await host.start("halt");
    await ticked;
    expect(place.fake.chatRequests().length).toBeGreaterThan(0);
  });

  it("refuses an API key per heartbeat and unknown settings, naming the field", async () => {
    const place = await setup();
    const host = await open(place);
    await expect(host.create({ goal: "g", settings: { apiKey: "sk-1" } })).rejects.toMatchObject({
      option: "apiKey",
    });
    await expect(host.create({ goal: "g", settings: { nope: 1 } })).rejects.toMatchObject({
      option: "nope",
    });
    await expect(host.create({ goal: " " })).rejects.toMatchObject({ option: "goal" });
    // One host per state dir: the second finds the lease held (exit 3, like a held lock).
    await expect(open(place)).rejects.toMatchObject({ code: "state-locked" });
  });

  it("never stores the API key with a heartbeat", async () => {
    const place = await setup(
      scripted({ assess: () => jsonMessage({ ...DEFAULT_ASSESSMENT, goalComplete: true }) }),
    );
    const host = await createHost({
      stateDir: place.stateDir,
      workdir: place.workdir,
      env: {
        OPENAI_API_KEY: "sk-host-secret",
        RAVENCLAWS_CONFIG_DIR: path.join(place.workdir, "nc"),
      },
      defaults: { baseUrl: place.fake.baseURL, model: "fake" },
    });
    cleanups.push(() => host.close());
    const done = until(host, allDone(host, 1));
    await host.create({ id: "k", goal: "g", settings: { tools: false } });
    await done;
    await host.close();
    expect(place.fake.chatRequests()[0]?.headers.authorization).toBe("Bearer sk-host-secret");
    for (const name of await fs.readdir(place.stateDir)) {
      const stat = await fs.stat(path.join(place.stateDir, name));
      if (stat.isFile())
        expect(await fs.readFile(path.join(place.stateDir, name), "utf8")).not.toContain(
          "sk-host-secret",
        );
    }
  });

  it("does not host a heartbeat whose lock another process (a run) holds, and takes it once released", async () => {
    const place = await setup();
    let host = await open(place);
    const slept = until(
      host,
      (e) => e.type === "state" && e.summary.status === "sleeping" && e.summary.tick === 1,
    );
    await host.create({ id: "shared", goal: "g", settings: { tickInterval: 3600, tools: false } });
    await slept;
    await host.close();
    // A `run` of the same id holds its lock (an ordinary, refreshed one).
    const { FileHeartbeatStore, heartbeatPaths } = await import(
      "../../src/services/store/index.js"
    );
    const store = new FileHeartbeatStore(heartbeatPaths(place.stateDir, "shared"));
    const lock = await store.acquireLock();
    host = await open(place);
    const [row] = host.list();
    expect(row?.status).toBe("unavailable");
    expect(row?.problem).toContain("already running");
    const taken = until(host, (e) => e.type === "state" && e.summary.status === "sleeping");
    await lock.release();
    await taken;
    const held = JSON.parse(
      await fs.readFile(path.join(place.stateDir, "heartbeat-shared.lock"), "utf8"),
    );
    expect(held.lease).toBe("host.lease");
  });
});

describe("host approvals", () => {
  it("a stop while a write awaits approval saves it shutdown with the call kept; started again it waits for it, and approve completes it", async () => {
    const place = await setup(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                { id: "w1", name: "write_file", arguments: { path: "out.md", content: "hi" } },
              ])
            : message("Done."),
      }),
    );
    const host = await open(place);
    const waiting = until(host, (e) => e.type === "approval" && e.decision === "pending");
    await host.create({
      id: "hw",
      goal: "Write out.md",
      settings: { tickInterval: 0, maxTicks: 1, toolAsk: ["write(**)"] },
    });
    await waiting;
    await host.stop("hw");
    const stopped = JSON.parse(
      await fs.readFile(path.join(place.stateDir, "heartbeat-hw.json"), "utf8"),
    );
    expect(stopped).toMatchObject({ status: "shutdown", reason: "awaiting-approval", tick: 0 });
    const pending = await listPendingApprovals(place.stateDir);
    expect(pending).toMatchObject([{ id: "hw", callId: "w1", tool: "write_file" }]);

    const waitingAgain = until(host, (e) => e.type === "approval" && e.decision === "pending");
    await host.start("hw");
    await waitingAgain;
    const done = until(host, () =>
      host.list().some((s) => s.id === "hw" && s.status === "completed"),
    );
    await decideApproval(place.stateDir, "hw", {
      decision: "approve",
      by: { user: "test", pid: process.pid },
    });
    await done;
    expect(await fs.readFile(path.join(place.workdir, "out.md"), "utf8")).toBe("hi");
    // One tick, continued after the stop: the model was asked for the write once.
    expect(await journalTicks(place.stateDir, "hw")).toBe(1);
  }, 60_000);
});
