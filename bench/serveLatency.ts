/**
 * Overview API latency: `GET /api/heartbeats` over real HTTP from the real
 * server in front of the real host, which has adopted `count` sleeping
 * heartbeats (clones of one that ticked once against the in-process stub
 * model, due in a year so none ticks while measured).
 */
import * as fs from "node:fs/promises";
import * as http from "node:http";
import * as path from "node:path";
import { createHost } from "../src/host/host.js";
import type { Host, HostEvent } from "../src/host/types.js";
import { startApiServer } from "../src/serve/server.js";
import { StubModel } from "./stubModel.js";

/** What {@link measureOverviewLatency} reports. */
export interface OverviewLatency {
  heartbeats: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Bytes of one overview response. */
  bytes: number;
  /** CPU time of this process (server and client together) per request: the figure the machine's load does not inflate. */
  cpuMsPerRequest: number;
}

const TEMPLATE = "tmpl-serve-0000";

function settled(host: Host, predicate: (event: HostEvent) => boolean): Promise<void> {
  return new Promise((resolve) => {
    const off = host.subscribe((event) => {
      if (predicate(event)) {
        off();
        resolve();
      }
    });
  });
}

function get(port: number, agent: http.Agent): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: "/api/heartbeats", agent }, (res) => {
        let bytes = 0;
        res.on("data", (c: Buffer) => {
          bytes += c.length;
        });
        res.on("end", () => {
          if (res.statusCode !== 200) reject(new Error(`GET /api/heartbeats: ${res.statusCode}`));
          else resolve({ ms: performance.now() - t0, bytes });
        });
      })
      .on("error", reject);
  });
}

const percentileOf = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ??
  Number.NaN;

/** Measures the overview with `count` hosted heartbeats, `requests` sequential requests after a warm-up. */
export async function measureOverviewLatency(
  dir: string,
  count: number,
  requests: number,
): Promise<OverviewLatency> {
  const env = { RAVENCLAWS_CONFIG_DIR: path.join(dir, "no-config") };
  const deps = { llmFor: async () => new StubModel({ busy: () => false }), userConfig: null };

  // One heartbeat that ticked once and sleeps for a year: the template.
  const templateDir = path.join(dir, "template");
  await fs.mkdir(templateDir, { recursive: true });
  const templateState = path.join(templateDir, ".ravenclaws");
  const first = await createHost({ stateDir: templateState, workdir: templateDir, env }, deps);
  const slept = settled(
    first,
    (e) => e.type === "state" && e.summary.status === "sleeping" && e.summary.tick === 1,
  );
  await first.create({
    id: TEMPLATE,
    goal: "Keep NOTES.md summarising the TODO markers in this repository",
    settings: { tickInterval: 365 * 24 * 3600, tools: false },
  });
  await slept;
  await first.close();
  const state = await fs.readFile(path.join(templateState, `heartbeat-${TEMPLATE}.json`), "utf8");
  const journal = await fs.readFile(
    path.join(templateState, `heartbeat-${TEMPLATE}.jsonl`),
    "utf8",
  );

  const workdir = path.join(dir, "many");
  const stateDir = path.join(workdir, ".ravenclaws");
  await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const id = `hb-${String(i).padStart(TEMPLATE.length - 3, "0")}`;
    writes.push(
      fs.writeFile(path.join(stateDir, `heartbeat-${id}.json`), state.split(TEMPLATE).join(id)),
      fs.writeFile(path.join(stateDir, `heartbeat-${id}.jsonl`), journal.split(TEMPLATE).join(id)),
    );
    if (writes.length >= 512) await Promise.all(writes.splice(0));
  }
  await Promise.all(writes);

  const host = await createHost({ stateDir, workdir, env }, deps);
  const server = await startApiServer({
    host,
    port: 0,
    dashboardDir: path.join(dir, "no-dashboard"),
    redact: (text) => text,
    log: () => {},
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const port = Number(new URL(server.url).port);
    const hosted = host.list().length;
    if (hosted !== count) throw new Error(`the host adopted ${hosted} heartbeats, not ${count}`);
    let bytes = 0;
    for (let i = 0; i < 20; i++) bytes = (await get(port, agent)).bytes;
    const times: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < requests; i++) times.push((await get(port, agent)).ms);
    const cpu = process.cpuUsage(cpu0);
    times.sort((a, b) => a - b);
    return {
      heartbeats: count,
      requests,
      p50Ms: percentileOf(times, 50),
      p99Ms: percentileOf(times, 99),
      maxMs: times[times.length - 1] ?? Number.NaN,
      bytes,
      cpuMsPerRequest: (cpu.user + cpu.system) / 1000 / requests,
    };
  } finally {
    agent.destroy();
    await server.close();
    await host.close();
  }
}
