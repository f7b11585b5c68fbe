/**
 * The hosting measurements themselves (see bench/hosting.ts): run in a child
 * process by bench/hostingChild.ts for `npm run bench`, in process by the
 * bench's quick test.
 *
 * The heartbeats are clones of one template heartbeat that ticked once under
 * a host (its state file and journal, with the id replaced), so that 10,000
 * of them exist in seconds; the host then adopts them as `serve` would.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { createHost } from "../src/host/host.js";
import type { Host, HostEvent } from "../src/host/types.js";
import { StubModel } from "./stubModel.js";

const MB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const TEMPLATE = "tmpl-00000000";

function until(host: Host, predicate: (event: HostEvent) => boolean): Promise<void> {
  return new Promise((resolve) => {
    const off = host.subscribe((event) => {
      if (predicate(event)) {
        off();
        resolve();
      }
    });
  });
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
};

/** Parameters of one measurement. */
export interface HostingRun {
  dir: string;
  count: number;
  intervalSec: number;
  durationMs: number;
  maxConcurrentTicks: number;
  /** Time given to write and adopt the heartbeats before the first is due. */
  leadMs: number;
}

function context(run: HostingRun) {
  const stub = new StubModel({ busy: () => false });
  const deps = { llmFor: async () => stub, userConfig: null };
  const env = { RAVENCLAWS_CONFIG_DIR: path.join(run.dir, "no-config") };
  return { stub, deps, env };
}

/** One heartbeat that ticked once and sleeps: the template of all the others. */
async function template(run: HostingRun): Promise<{ state: string; journal: string }> {
  const { deps, env } = context(run);
  const workdir = path.join(run.dir, "template");
  await fs.mkdir(workdir, { recursive: true });
  const stateDir = path.join(workdir, ".ravenclaws");
  const host = await createHost({ stateDir, workdir, env }, deps);
  const slept = until(
    host,
    (e) => e.type === "state" && e.summary.status === "sleeping" && e.summary.tick === 1,
  );
  await host.create({
    id: TEMPLATE,
    goal: "Keep NOTES.md summarising the TODO markers",
    settings: { tickInterval: run.intervalSec, tools: false },
  });
  await slept;
  await host.close();
  return {
    state: await fs.readFile(path.join(stateDir, `heartbeat-${TEMPLATE}.json`), "utf8"),
    journal: await fs.readFile(path.join(stateDir, `heartbeat-${TEMPLATE}.jsonl`), "utf8"),
  };
}

/** `count` clones due evenly over `spreadMs` from `start`. */
async function clone(run: HostingRun, stateDir: string, spreadMs: number, start: number) {
  const { state, journal } = await template(run);
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < run.count; i++) {
    const id = `hb-${String(i).padStart(TEMPLATE.length - 3, "0")}`;
    const file = JSON.parse(state.split(TEMPLATE).join(id));
    const due = new Date(start + (spreadMs * i) / run.count).toISOString();
    file.nextTickAt = due;
    file.snapshot.context.nextTickAt = due;
    writes.push(fs.writeFile(path.join(stateDir, `heartbeat-${id}.json`), JSON.stringify(file)));
    writes.push(
      fs.writeFile(path.join(stateDir, `heartbeat-${id}.jsonl`), journal.split(TEMPLATE).join(id)),
    );
    if (writes.length >= 512) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);
}

/** RSS of a host whose heartbeats all sleep (next tick a day or more away). */
export async function measureRss(run: HostingRun) {
  const { deps, env } = context(run);
  const workdir = path.join(run.dir, "hosted");
  await fs.mkdir(workdir, { recursive: true });
  const stateDir = path.join(workdir, ".ravenclaws");
  await clone(run, stateDir, 3_600_000 * 24, Date.now() + 3_600_000);
  gc();
  const baseMb = process.memoryUsage().rss / MB;
  const t0 = performance.now();
  const host = await createHost({ stateDir, workdir, env }, deps);
  const adoptSeconds = (performance.now() - t0) / 1000;
  const stats = host.stats();
  const t1 = performance.now();
  const rows = host.list();
  const listMs = performance.now() - t1;
  gc();
  gc();
  const mem = process.memoryUsage();
  const t2 = performance.now();
  await host.close();
  const closeSeconds = (performance.now() - t2) / 1000;
  return {
    count: run.count,
    hosted: stats.hosted,
    live: stats.live,
    sleeping: rows.filter((r) => r.status === "sleeping").length,
    rssMb: mem.rss / MB,
    heapMb: mem.heapUsed / MB,
    baseMb,
    adoptSeconds,
    listMs,
    closeSeconds,
  };
}

/** Tick lateness: heartbeats due evenly over one interval, for `durationMs` after the first is due. */
export async function measureLateness(run: HostingRun) {
  const { stub, deps, env } = context(run);
  const workdir = path.join(run.dir, "hosted");
  await fs.mkdir(workdir, { recursive: true });
  const stateDir = path.join(workdir, ".ravenclaws");
  const firstDue = Date.now() + run.leadMs;
  await clone(run, stateDir, run.intervalSec * 1000, firstDue);
  const host = await createHost(
    { stateDir, workdir, env, maxConcurrentTicks: run.maxConcurrentTicks },
    deps,
  );
  if (Date.now() > firstDue) throw new Error(`adoption took longer than ${run.leadMs} ms`);
  const due = new Map<string, number>();
  for (const row of host.list()) if (row.nextTickAt) due.set(row.id, Date.parse(row.nextTickAt));
  const lateness: number[] = [];
  let maxRunning = 0;
  host.subscribe((event) => {
    // A tick starts in `observing` (issue 16): a quiet tick never reaches `assessing`.
    if (event.type === "state" && event.summary.state === "observing") {
      const at = due.get(event.id);
      if (at !== undefined) lateness.push(Date.now() - at);
      due.delete(event.id);
      maxRunning = Math.max(maxRunning, host.stats().running);
    }
    if (event.type === "tick" && event.summary.nextTickAt) {
      due.set(event.id, Date.parse(event.summary.nextTickAt));
    }
  });
  await new Promise((resolve) => setTimeout(resolve, firstDue - Date.now() + run.durationMs));
  const liveAtClose = host.stats().live;
  const t2 = performance.now();
  await host.close();
  const closeSeconds = (performance.now() - t2) / 1000;
  return {
    count: run.count,
    intervalSec: run.intervalSec,
    ticks: lateness.length,
    p50Ms: percentile(lateness, 50),
    p99Ms: percentile(lateness, 99),
    maxMs: lateness.length > 0 ? Math.max(...lateness) : Number.NaN,
    maxRunning,
    liveAtClose,
    closeSeconds,
    modelCalls: stub.total,
  };
}
