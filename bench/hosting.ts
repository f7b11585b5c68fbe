/**
 * The hosting figures of `npm run bench` (issue 14 point 2): RSS of a host
 * with 1,000 and 10,000 sleeping heartbeats, and tick lateness with 1,000
 * heartbeats on a 10 s interval against the in-process stub model. Each runs
 * in its own process (bench/hostingChild.ts), so the RSS is the host's alone.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_MAX_CONCURRENT_TICKS } from "../src/host/types.js";

/** Targets from issue 14. */
export const HOSTING_TARGETS = { rss10kMb: 300, latenessP99Ms: 1_000 } as const;

/** How much the hosting section does. */
export interface HostingConfig {
  rssCounts: [number, number];
  lateness: { count: number; intervalSec: number; durationSec: number; leadMs: number };
}

export const FULL_HOSTING: HostingConfig = {
  rssCounts: [1_000, 10_000],
  lateness: { count: 1_000, intervalSec: 10, durationSec: 20, leadMs: 12_000 },
};

export const QUICK_HOSTING: HostingConfig = {
  rssCounts: [20, 50],
  lateness: { count: 20, intervalSec: 2, durationSec: 3, leadMs: 3_000 },
};

/** What one child reports for RSS. */
export interface RssFigures {
  count: number;
  hosted: number;
  live: number;
  sleeping: number;
  rssMb: number;
  heapMb: number;
  baseMb: number;
  adoptSeconds: number;
  listMs: number;
  closeSeconds: number;
}

/** What the lateness child reports. */
export interface LatenessFigures {
  count: number;
  intervalSec: number;
  ticks: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  maxRunning: number;
  liveAtClose: number;
  closeSeconds: number;
  modelCalls: number;
}

export interface HostingFigures {
  rss: RssFigures[];
  lateness: LatenessFigures;
  maxConcurrentTicks: number;
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "hostingChild.js");

/** Runs one measurement in a child process (built bench), or in process when run from source (tests). */
async function runChild<T>(args: string[]): Promise<T> {
  if (!existsSync(CHILD)) {
    const work = await import("./hostingWork.js");
    const [mode, dir = ".", count, interval, duration, max, lead] = args;
    const run = {
      dir,
      count: Number(count),
      intervalSec: Number(interval),
      durationMs: Number(duration) * 1000,
      maxConcurrentTicks: Number(max),
      leadMs: Number(lead),
    };
    return (mode === "rss" ? await work.measureRss(run) : await work.measureLateness(run)) as T;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--expose-gc", CHILD, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("close", (code) => {
      const line = out.trim().split("\n").at(-1);
      if (code !== 0 || !line) {
        reject(new Error(`hosting bench child ${args[0]} failed (exit ${code}): ${err || out}`));
        return;
      }
      resolve(JSON.parse(line) as T);
    });
  });
}

/** Runs the hosting measurements in `dir` (tmpfs when there is one). */
export async function measureHosting(
  dir: string,
  config: HostingConfig,
  log: (line: string) => void,
): Promise<HostingFigures> {
  const rss: RssFigures[] = [];
  for (const count of config.rssCounts) {
    const place = await fs.mkdtemp(path.join(dir, `hosting-rss-${count}-`));
    try {
      rss.push(
        await runChild<RssFigures>([
          "rss",
          place,
          String(count),
          "3600",
          "0",
          String(DEFAULT_MAX_CONCURRENT_TICKS),
          "0",
        ]),
      );
      log(`hosting: ${count} sleeping heartbeats, RSS ${rss.at(-1)?.rssMb.toFixed(1)} MB`);
    } finally {
      await fs.rm(place, { recursive: true, force: true });
    }
  }
  const l = config.lateness;
  const place = await fs.mkdtemp(path.join(dir, "hosting-lateness-"));
  try {
    const lateness = await runChild<LatenessFigures>([
      "lateness",
      place,
      String(l.count),
      String(l.intervalSec),
      String(l.durationSec),
      String(DEFAULT_MAX_CONCURRENT_TICKS),
      String(l.leadMs),
    ]);
    log(`hosting: lateness p50 ${lateness.p50Ms} ms, p99 ${lateness.p99Ms} ms`);
    return { rss, lateness, maxConcurrentTicks: DEFAULT_MAX_CONCURRENT_TICKS };
  } finally {
    await fs.rm(place, { recursive: true, force: true });
  }
}
