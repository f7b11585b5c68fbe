/**
 * `npm run bench:scale` (issue 15 point 5): many heartbeats in PostgreSQL,
 * ticked by real `ravenclaws worker` processes against the stub model over
 * HTTP (bench/stubModelServer.ts), on this machine.
 *
 * For each worker count (4, then 1 by default), in a fresh database:
 * 1. `heartbeats` heartbeats are created through the PG store (each with its
 *    own empty workdir, tools off, `--tick-interval` = the interval);
 * 2. the worker processes start;
 * 3. the first ticks are scheduled evenly over one interval (the pg-boss
 *    `heartbeat-tick` queue, `startAfter`), starting `lead` seconds on;
 * 4. the run lasts until every heartbeat has ticked `rounds` times (or a
 *    deadline, when the workers cannot keep up);
 * 5. the workers get SIGTERM; the figures come from the journal (each tick's
 *    `startedAt` against the `nextTickAt` it was planned for), /proc (worker
 *    RSS and CPU, the PostgreSQL server's CPU) and the database's sizes.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type BenchRow, formatMarkdownTable, formatTable } from "./bench.js";
import { cpuMsOf, loadAverage, rssMbOf, treeFigures } from "./procfs.js";
import { type ScaleDatabase, type ScaleServer, startScaleServer } from "./scaleDb.js";
import { startStubModelServer } from "./stubModelServer.js";

/** Issue 15's target: p99 tick lateness under a second. */
export const SCALE_TARGETS = { latenessP99Ms: 1_000 } as const;

/** What one bench:scale run does. */
export interface ScaleConfig {
  heartbeats: number;
  intervalSec: number;
  /** Worker counts, run one after the other, each on a fresh database. */
  workers: number[];
  /** `--concurrency` of each worker; the worker's default when null. */
  concurrency: number | null;
  /** Ticks every heartbeat must reach. */
  rounds: number;
  /** Seconds from the workers' start to the first heartbeat's first tick. */
  leadSec: number;
  /** Extra seconds past `rounds` intervals before a run that cannot keep up is stopped. */
  graceSec: number;
  /** Delay of every stub model answer, ms. */
  modelDelayMs: number;
  /** `--idle-recheck` of the heartbeats: `0` makes every tick call the (stub) model. */
  idleRecheck: string;
}

export const FULL_SCALE: ScaleConfig = {
  heartbeats: 10_000,
  intervalSec: 300,
  workers: [4, 1],
  concurrency: null,
  rounds: 2,
  leadSec: 10,
  graceSec: 60,
  modelDelayMs: 0,
  idleRecheck: "0",
};

/** The figures of one worker count. */
export interface ScaleRun {
  workers: number;
  heartbeats: number;
  intervalSec: number;
  /** Heartbeats that reached `rounds` ticks before the run ended. */
  covered: number;
  /** Ticks journaled (interrupted ones excluded). */
  ticks: number;
  /** The same tick number journaled twice for one heartbeat (must be 0). */
  duplicateTicks: number;
  /** Ticks journaled `failed`. */
  failedTicks: number;
  /** Tick lateness: its `startedAt` minus the time it was planned for, ms. */
  lateness: { p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number; count: number };
  /**
   * Ticks due before the run ended that had not started: counted in the
   * lateness percentiles with their lateness so far (a lower bound).
   */
  overdue: number;
  /** Ticks per second from the first due time to the last tick's end. */
  ticksPerSecond: number;
  /** What the schedule asks for: heartbeats / interval. */
  offeredPerSecond: number;
  /** Median duration of a tick (restore to commit), ms. */
  tickMsP50: number;
  /** Wall time of the run from the first due time, s. */
  seconds: number;
  /** Whether it ended because every heartbeat had ticked `rounds` times. */
  keptUp: boolean;
  /** CPU per tick: all workers together, and the PostgreSQL server (null without /proc or an external server). */
  cpuMsPerTick: { workers: number | null; postgres: number | null };
  /** RSS of the worker processes, MB: the largest sample of any worker, and each worker's last. */
  workerRssMb: { peak: number | null; last: (number | null)[] };
  /** Bytes in the database per heartbeat. */
  dbBytes: {
    ours: number;
    pgboss: number;
    database: number;
    perHeartbeat: { ours: number; pgboss: number; database: number };
    journalRows: number;
    journalBytesPerRow: number;
  };
  /** Worker exit codes after SIGTERM, and the slowest exit, ms. */
  exits: (number | null)[];
  exitMs: number;
  /** 1-minute load average: at the start, mean and max while running, at the end. */
  load: { start: number; mean: number; max: number; end: number };
  /** Seconds to create the heartbeats (not part of the measured run). */
  createSeconds: number;
  /** How long after the first due time the due times were set (0 unless the database was slow). */
  lateStartMs: number;
  /** Model requests the stub answered during this run. */
  modelRequests: number;
}

/** Everything bench:scale measured. */
export interface ScaleResult {
  date: string;
  config: ScaleConfig;
  machine: { cpus: number; cpuModel: string; node: string; platform: string; memoryMb: number };
  server: string;
  runs: ScaleRun[];
  rows: BenchRow[];
  notes: string[];
  seconds: number;
  out: string | null;
}

/** Options of {@link runScale}. */
export interface ScaleOptions {
  config?: Partial<ScaleConfig>;
  /** A PostgreSQL server to use (its user must be allowed to CREATE DATABASE); an embedded one otherwise. */
  databaseUrl?: string;
  /** The project root (holds dist/cli.js); found from this file unless given. */
  root?: string;
  /** Where the JSON goes; none when null. */
  out?: string | null;
  log?: (line: string) => void;
}

const MB = 1024 * 1024;
const GOAL = "Keep NOTES.md summarising the TODO markers in this repository";

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(path.join(dir, "package.json")) && existsSync(path.join(dir, "src"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no project root above ${start}`);
    dir = parent;
  }
}

/** Nearest-rank percentile of sorted values. */
function percentileOf(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ] as number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function workerEnv(configDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("OPENAI_") || key.startsWith("RAVENCLAWS_")) continue;
    env[key] = value;
  }
  env.RAVENCLAWS_CONFIG_DIR = configDir;
  env.NO_COLOR = "1";
  return env;
}

interface Worker {
  child: ChildProcess;
  output: string[];
  exit: Promise<number | null>;
}

function startWorker(cli: string, args: string[], env: NodeJS.ProcessEnv): Worker {
  const child = spawn(process.execPath, [cli, "worker", ...args], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const keep = (d: Buffer) => {
    output.push(d.toString());
    if (output.length > 200) output.splice(0, output.length - 200);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exit = new Promise<number | null>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal ? -1 : null)));
  });
  return { child, output, exit };
}

/** The lateness of every journaled tick, ms, with its tick number. */
async function latenessOf(
  db: ScaleDatabase,
): Promise<{ late: number[]; ticks: number; tickMs: number[] }> {
  const { rows } = await db.query(
    `with t as (
       select j.heartbeat_id,
              (j.entry->>'startedAt')::timestamptz as started,
              (j.entry->>'durationMs')::float8 as duration,
              lag((j.entry->>'nextTickAt')::timestamptz)
                over (partition by j.heartbeat_id order by j.id) as planned
         from ravenclaws.journal j
        where j.type = 'tick' and j.entry->>'status' <> 'interrupted'
     )
     select extract(epoch from (t.started - coalesce(t.planned, f.due))) * 1000 as late,
            t.duration
       from t join bench_scale.first_due f on f.id = t.heartbeat_id`,
    [],
  );
  const late = rows.map((r) => Number(r.late));
  const tickMs = rows.map((r) => Number(r.duration));
  return { late, ticks: rows.length, tickMs };
}

/** Ticks due before `at` that had not started by then: their lateness so far, ms. */
async function overdueAt(db: ScaleDatabase, at: Date, rounds: number): Promise<number[]> {
  const { rows } = await db.query(
    `select extract(epoch from ($1::timestamptz - coalesce(h.next_tick_at, f.due))) * 1000 as late
       from ravenclaws.heartbeats h join bench_scale.first_due f on f.id = h.id
      where h.tick < $2 and coalesce(h.next_tick_at, f.due) < $1::timestamptz
        and h.status not in ('completed', 'failed')`,
    [at.toISOString(), rounds],
  );
  return rows.map((r) => Number(r.late));
}

async function integrity(db: ScaleDatabase): Promise<{ duplicates: number; failed: number }> {
  const dup = await db.query(
    `select count(*)::int as n from (
       select heartbeat_id, entry->>'tick' from ravenclaws.journal
        where type = 'tick' and entry->>'status' <> 'interrupted'
        group by 1, 2 having count(*) > 1) d`,
    [],
  );
  const failed = await db.query(
    `select count(*)::int as n from ravenclaws.journal where type = 'tick' and entry->>'status' = 'failed'`,
    [],
  );
  return { duplicates: Number(dup.rows[0]?.n ?? 0), failed: Number(failed.rows[0]?.n ?? 0) };
}

async function sizes(db: ScaleDatabase): Promise<{
  ours: number;
  pgboss: number;
  database: number;
  journalRows: number;
  journalBytes: number;
}> {
  const { rows } = await db.query(
    `select n.nspname as schema, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint as bytes
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'm') and n.nspname in ('ravenclaws', 'pgboss')
      group by n.nspname`,
    [],
  );
  const of = (schema: string) => Number(rows.find((r) => r.schema === schema)?.bytes ?? 0);
  const database = await db.query("select pg_database_size(current_database())::bigint as b", []);
  const journal = await db.query(
    `select count(*)::bigint as n, pg_total_relation_size('ravenclaws.journal')::bigint as b
       from ravenclaws.journal`,
    [],
  );
  return {
    ours: of("ravenclaws"),
    pgboss: of("pgboss"),
    database: Number(database.rows[0]?.b ?? 0),
    journalRows: Number(journal.rows[0]?.n ?? 0),
    journalBytes: Number(journal.rows[0]?.b ?? 0),
  };
}

/** One worker count on a fresh database. */
async function runOnce(
  server: ScaleServer,
  workers: number,
  config: ScaleConfig,
  cli: string,
  tmp: string,
  model: Awaited<ReturnType<typeof startStubModelServer>>,
  log: (line: string) => void,
): Promise<ScaleRun> {
  const name = `scale_w${workers}_${Date.now()}`;
  const db = await server.freshDatabase(name);
  const place = await fs.mkdtemp(path.join(tmp, `w${workers}-`));
  const running: Worker[] = [];
  try {
    // 1. The heartbeats, through the store (their first ticks a day ahead).
    const ids = Array.from(
      { length: config.heartbeats },
      (_, i) => `hb-${String(i).padStart(5, "0")}`,
    );
    const t0 = performance.now();
    await Promise.all(ids.map((id) => fs.mkdir(path.join(place, "work", id), { recursive: true })));
    await db.createHeartbeats(
      ids.map((id) => ({ id, workdir: path.join(place, "work", id), goal: GOAL })),
      {
        tickInterval: config.intervalSec,
        tools: false,
        idleRecheck: config.idleRecheck,
        baseUrl: model.baseURL,
        model: "stub",
      },
    );
    const createSeconds = (performance.now() - t0) / 1000;
    log(
      `${workers} worker(s): ${config.heartbeats} heartbeats created in ${createSeconds.toFixed(1)} s`,
    );

    // 2. The workers: the database and the key from the environment, as a deployment would.
    const env = {
      ...workerEnv(path.join(place, "config")),
      RAVENCLAWS_DATABASE_URL: db.url,
      RAVENCLAWS_API_KEY: "sk-bench-scale",
    };
    const args = [
      "--quiet",
      ...(config.concurrency ? ["--concurrency", String(config.concurrency)] : []),
    ];
    for (let i = 0; i < workers; i++) running.push(startWorker(cli, args, env));
    const modelBefore = model.counts();

    // 3. The first ticks, evenly over one interval from `lead` seconds on.
    const firstDue = Date.now() + config.leadSec * 1000;
    const spacing = (config.intervalSec * 1000) / config.heartbeats;
    await db.setFirstTicks(
      ids.map((id, i) => ({ id, due: new Date(firstDue + Math.floor(i * spacing)) })),
    );
    const lateStartMs = Math.max(0, Date.now() - firstDue);
    if (lateStartMs > 0)
      log(`warning: the first ticks were set ${lateStartMs} ms after the first was due`);
    const cpu0 = running.map((w) => cpuMsOf(w.child.pid ?? -1));
    const pg0 = server.postmasterPid ? treeFigures(server.postmasterPid) : null;

    // 4. Until every heartbeat ticked `rounds` times, or the deadline.
    const deadline = firstDue + (config.rounds * config.intervalSec + config.graceSec) * 1000;
    const loads: number[] = [loadAverage()];
    const load0 = loads[0] as number;
    let peakRss: number | null = null;
    const lastRss: (number | null)[] = running.map(() => null);
    const lastCpu: (number | null)[] = [...cpu0];
    let covered = 0;
    let lastReport = 0;
    for (;;) {
      await sleep(1_000);
      running.forEach((w, i) => {
        const rss = rssMbOf(w.child.pid ?? -1);
        if (rss !== null) {
          lastRss[i] = rss;
          peakRss = Math.max(peakRss ?? 0, rss);
        }
        lastCpu[i] = cpuMsOf(w.child.pid ?? -1) ?? lastCpu[i] ?? null;
      });
      loads.push(loadAverage());
      const { rows } = await db.query(
        "select count(*) filter (where tick >= $1)::int as done from ravenclaws.heartbeats",
        [config.rounds],
      );
      covered = Number(rows[0]?.done ?? 0);
      const dead = running.find((w) => w.child.exitCode !== null);
      if (dead) {
        throw new Error(
          `a worker exited (${dead.child.exitCode}) during the run:\n${dead.output.join("").slice(-4000)}`,
        );
      }
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        log(
          `${workers} worker(s): ${covered}/${config.heartbeats} at tick ${config.rounds}, load ${loads.at(-1)}, worker RSS ${lastRss.map((r) => r?.toFixed(0) ?? "?").join("/")} MB`,
        );
      }
      if (covered >= config.heartbeats || Date.now() > deadline) break;
    }
    const endedAt = new Date();
    const keptUp = covered >= config.heartbeats;
    const pg1 = server.postmasterPid ? treeFigures(server.postmasterPid) : null;

    // 5. SIGTERM, then the figures.
    const stopStart = performance.now();
    for (const w of running) w.child.kill("SIGTERM");
    const exits = await Promise.all(
      running.map((w) =>
        Promise.race([
          w.exit,
          sleep(15_000).then(() => {
            w.child.kill("SIGKILL");
            return -9;
          }),
        ]),
      ),
    );
    const exitMs = performance.now() - stopStart;
    running.length = 0;

    const { late, ticks, tickMs } = await latenessOf(db);
    const overdue = keptUp ? [] : await overdueAt(db, endedAt, config.rounds);
    const all = [...late, ...overdue].sort((a, b) => a - b);
    const lastEnd = await db.query(
      `select max((entry->>'finishedAt')::timestamptz) as t from ravenclaws.journal where type = 'tick'`,
      [],
    );
    const lastTickEnd = lastEnd.rows[0]?.t
      ? new Date(lastEnd.rows[0].t as string).getTime()
      : Date.now();
    const seconds = (lastTickEnd - firstDue) / 1000;
    const check = await integrity(db);
    const size = await sizes(db);
    const workerCpu = lastCpu.every((c, i) => c !== null && cpu0[i] !== null)
      ? lastCpu.reduce<number>((sum, c, i) => sum + ((c as number) - (cpu0[i] as number)), 0)
      : null;
    const modelAfter = model.counts();
    const requests = (c: typeof modelAfter) => c.assessment + c.plan + c.execute;
    const n = config.heartbeats;
    return {
      workers,
      heartbeats: n,
      intervalSec: config.intervalSec,
      covered,
      ticks,
      duplicateTicks: check.duplicates,
      failedTicks: check.failed,
      lateness: {
        p50Ms: percentileOf(all, 50),
        p90Ms: percentileOf(all, 90),
        p99Ms: percentileOf(all, 99),
        maxMs: all.at(-1) ?? Number.NaN,
        count: all.length,
      },
      overdue: overdue.length,
      ticksPerSecond: ticks / Math.max(seconds, 0.001),
      offeredPerSecond: n / config.intervalSec,
      tickMsP50: percentileOf(
        [...tickMs].sort((a, b) => a - b),
        50,
      ),
      seconds,
      keptUp,
      cpuMsPerTick: {
        workers: workerCpu === null || ticks === 0 ? null : workerCpu / ticks,
        postgres: pg0 && pg1 && ticks > 0 ? (pg1.cpuMs - pg0.cpuMs) / ticks : null,
      },
      workerRssMb: { peak: peakRss, last: lastRss },
      dbBytes: {
        ours: size.ours,
        pgboss: size.pgboss,
        database: size.database,
        perHeartbeat: { ours: size.ours / n, pgboss: size.pgboss / n, database: size.database / n },
        journalRows: size.journalRows,
        journalBytesPerRow: size.journalRows > 0 ? size.journalBytes / size.journalRows : 0,
      },
      exits,
      exitMs,
      load: {
        start: load0,
        mean: Math.round((loads.reduce((a, b) => a + b, 0) / loads.length) * 100) / 100,
        max: Math.max(...loads),
        end: loadAverage(),
      },
      createSeconds,
      lateStartMs,
      modelRequests: requests(modelAfter) - requests(modelBefore),
    };
  } finally {
    for (const w of running) w.child.kill("SIGKILL");
    await db.close();
    await fs.rm(place, { recursive: true, force: true });
  }
}

const fixed = (n: number | null, digits = 0) =>
  n === null || !Number.isFinite(n)
    ? "n/a"
    : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** The table rows: each figure of the most workers, beside the fewest workers' as the baseline. */
export function scaleRows(runs: ScaleRun[], config: ScaleConfig): BenchRow[] {
  const sorted = [...runs].sort((a, b) => b.workers - a.workers);
  const main = sorted[0];
  if (!main) return [];
  const base = sorted.length > 1 ? sorted[sorted.length - 1] : undefined;
  const what = `${main.heartbeats.toLocaleString("en-US")} heartbeats / ${config.intervalSec} s`;
  const w = (r: ScaleRun) => `${r.workers} worker${r.workers === 1 ? "" : "s"}`;
  const other = (f: (r: ScaleRun) => string) => (base ? `${f(base)} (${w(base)})` : "-");
  const ratio = (f: (r: ScaleRun) => number | null) => {
    const a = f(main);
    const b = base ? f(base) : null;
    return a !== null && b !== null && b !== 0 && Number.isFinite(a / b) ? (a / b).toFixed(2) : "-";
  };
  const mb = (bytes: number) => (bytes / 1024).toFixed(1);
  const rows: BenchRow[] = [];
  const p99ok = (r: ScaleRun) => r.keptUp && r.lateness.p99Ms < SCALE_TARGETS.latenessP99Ms;
  rows.push({
    metric: `scale: tick lateness p50, ms (${what}, ${w(main)})`,
    ours: fixed(main.lateness.p50Ms),
    other: other((r) => fixed(r.lateness.p50Ms)),
    ratio: ratio((r) => r.lateness.p50Ms),
    target: "-",
    result: "info",
  });
  rows.push({
    metric: `scale: tick lateness p99, ms (${what}, ${w(main)})`,
    ours: `${fixed(main.lateness.p99Ms)}${main.keptUp ? "" : " ≥, fell behind"}`,
    other: other((r) => `${fixed(r.lateness.p99Ms)}${r.keptUp ? "" : " ≥, fell behind"}`),
    ratio: ratio((r) => r.lateness.p99Ms),
    target: `< ${SCALE_TARGETS.latenessP99Ms} ms`,
    result: p99ok(main) ? "PASS" : "MISS",
  });
  rows.push({
    metric: `scale: ticks per second (offered ${main.offeredPerSecond.toFixed(1)}/s), ${w(main)}`,
    ours: main.ticksPerSecond.toFixed(1),
    other: other((r) => r.ticksPerSecond.toFixed(1)),
    ratio: ratio((r) => r.ticksPerSecond),
    target: `≥ ${main.offeredPerSecond.toFixed(1)}`,
    result: main.keptUp ? "PASS" : "MISS",
  });
  rows.push({
    metric: `scale: heartbeats that ticked ${config.rounds}× in ${config.rounds} intervals + ${config.graceSec} s, ${w(main)}`,
    ours: `${main.covered.toLocaleString("en-US")}`,
    other: other((r) => r.covered.toLocaleString("en-US")),
    ratio: ratio((r) => r.covered),
    target: `all ${main.heartbeats.toLocaleString("en-US")}`,
    result: main.keptUp ? "PASS" : "MISS",
  });
  rows.push({
    metric: `scale: CPU per tick, ms (workers + PostgreSQL), ${w(main)}`,
    ours: `${fixed(main.cpuMsPerTick.workers, 1)} + ${fixed(main.cpuMsPerTick.postgres, 1)}`,
    other: other(
      (r) => `${fixed(r.cpuMsPerTick.workers, 1)} + ${fixed(r.cpuMsPerTick.postgres, 1)}`,
    ),
    ratio: ratio((r) => r.cpuMsPerTick.workers),
    target: "-",
    result: "info",
  });
  rows.push({
    metric: `scale: worker RSS, peak of any worker, MB (${w(main)})`,
    ours: fixed(main.workerRssMb.peak, 1),
    other: other((r) => fixed(r.workerRssMb.peak, 1)),
    ratio: ratio((r) => r.workerRssMb.peak),
    target: "-",
    result: "info",
  });
  rows.push({
    metric: `scale: database per heartbeat at the end (${(main.ticks / main.heartbeats).toFixed(1)} ticks each), KB (ravenclaws + pgboss)`,
    ours: `${mb(main.dbBytes.perHeartbeat.ours)} + ${mb(main.dbBytes.perHeartbeat.pgboss)}`,
    other: other(
      (r) => `${mb(r.dbBytes.perHeartbeat.ours)} + ${mb(r.dbBytes.perHeartbeat.pgboss)}`,
    ),
    ratio: "-",
    target: "-",
    result: "info",
  });
  rows.push({
    metric: "scale: journal bytes per row (table + indexes)",
    ours: fixed(main.dbBytes.journalBytesPerRow),
    other: other((r) => fixed(r.dbBytes.journalBytesPerRow)),
    ratio: "-",
    target: "-",
    result: "info",
  });
  rows.push({
    metric: "scale: ticks journaled twice / failed ticks",
    ours: `${main.duplicateTicks} / ${main.failedTicks}`,
    other: other((r) => `${r.duplicateTicks} / ${r.failedTicks}`),
    ratio: "-",
    target: "0 / 0",
    result: sorted.every((r) => r.duplicateTicks === 0 && r.failedTicks === 0) ? "PASS" : "MISS",
  });
  return rows;
}

/** Options from the command line. */
export function parseScaleArgs(argv: string[]): ScaleOptions & { markdown: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      heartbeats: { type: "string" },
      interval: { type: "string" },
      workers: { type: "string" },
      concurrency: { type: "string" },
      rounds: { type: "string" },
      lead: { type: "string" },
      grace: { type: "string" },
      "model-delay": { type: "string" },
      "idle-recheck": { type: "string" },
      "database-url": { type: "string" },
      out: { type: "string" },
      markdown: { type: "boolean", default: false },
    },
  });
  const num = (name: string, value: string | undefined, min: number) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name} must be an integer ≥ ${min}, not ${value}`);
    return n;
  };
  const config: Partial<ScaleConfig> = {};
  const set = <K extends keyof ScaleConfig>(key: K, value: ScaleConfig[K] | undefined) => {
    if (value !== undefined) config[key] = value;
  };
  set("heartbeats", num("heartbeats", values.heartbeats, 1));
  set("intervalSec", num("interval", values.interval, 1));
  set("concurrency", num("concurrency", values.concurrency, 1));
  set("rounds", num("rounds", values.rounds, 1));
  set("leadSec", num("lead", values.lead, 1));
  set("graceSec", num("grace", values.grace, 0));
  set("modelDelayMs", num("model-delay", values["model-delay"], 0));
  set("idleRecheck", values["idle-recheck"]);
  if (values.workers !== undefined) {
    config.workers = values.workers.split(",").map((w) => num("workers", w.trim(), 1) as number);
  }
  return {
    config,
    markdown: values.markdown,
    ...(values["database-url"] ? { databaseUrl: values["database-url"] } : {}),
    ...(values.out ? { out: path.resolve(values.out) } : {}),
  };
}

/** Runs every worker count and writes the JSON. */
export async function runScale(options: ScaleOptions = {}): Promise<ScaleResult> {
  const config: ScaleConfig = { ...FULL_SCALE, ...options.config };
  const root = options.root ?? findRoot(path.dirname(fileURLToPath(import.meta.url)));
  const cli = path.join(root, "dist", "cli.js");
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` first`);
  const out =
    options.out === undefined ? path.join(root, "bench", "results", "scale.json") : options.out;
  const log = options.log ?? ((line: string) => process.stderr.write(`bench:scale: ${line}\n`));
  const started = performance.now();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "ravenclaws-scale-"));
  // As root the embedded server runs as the user postgres, which must reach its data dir.
  await fs.chmod(tmp, 0o755);
  const model = await startStubModelServer(config.modelDelayMs);
  let server: ScaleServer | null = null;
  try {
    server = await startScaleServer(path.join(tmp, "pg"), options.databaseUrl ?? null);
    log(`PostgreSQL: ${server.description}`);
    const runs: ScaleRun[] = [];
    for (const workers of config.workers) {
      const run = await runOnce(server, workers, config, cli, tmp, model, log);
      log(
        `${workers} worker(s): p50 ${fixed(run.lateness.p50Ms)} ms, p99 ${fixed(run.lateness.p99Ms)} ms, ${run.ticksPerSecond.toFixed(1)} ticks/s, ${run.covered}/${run.heartbeats} covered, load ${run.load.mean} (max ${run.load.max})`,
      );
      runs.push(run);
    }
    const cpus = os.cpus();
    const result: ScaleResult = {
      date: new Date().toISOString(),
      config,
      machine: {
        cpus: cpus.length,
        cpuModel: cpus[0]?.model ?? "unknown",
        node: process.version,
        platform: `${os.platform()} ${os.release()}`,
        memoryMb: Math.round(os.totalmem() / MB),
      },
      server: server.description,
      runs,
      rows: scaleRows(runs, config),
      notes: scaleNotes(runs, config),
      seconds: (performance.now() - started) / 1000,
      out,
    };
    if (out) {
      await fs.mkdir(path.dirname(out), { recursive: true });
      await fs.writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    }
    return result;
  } finally {
    await server?.stop();
    await model.close();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

function scaleNotes(runs: ScaleRun[], config: ScaleConfig): string[] {
  const notes = [
    `setup: ${config.heartbeats.toLocaleString("en-US")} heartbeats created through the PostgreSQL store (own empty workdir each, tools off, --tick-interval ${config.intervalSec}, --idle-recheck ${config.idleRecheck}), first ticks spread evenly over one interval from ${config.leadSec} s after the workers started; real \`ravenclaws worker\` processes${config.concurrency ? ` (--concurrency ${config.concurrency})` : ""} against the stub model over HTTP on 127.0.0.1 (${config.modelDelayMs} ms per answer); until every heartbeat ticked ${config.rounds} times or ${config.rounds} intervals + ${config.graceSec} s.`,
    "lateness: each journaled tick's startedAt minus the nextTickAt the tick before it planned (the first tick: the time it was scheduled for); ticks due but not started when a run that fell behind ended count with their lateness so far (a lower bound).",
  ];
  for (const r of runs) {
    notes.push(
      `${r.workers} worker(s): ${r.keptUp ? "kept up" : `fell behind (${r.covered.toLocaleString("en-US")} of ${r.heartbeats.toLocaleString("en-US")} reached tick ${config.rounds}; ${r.overdue.toLocaleString("en-US")} ticks overdue at the end)`}; ${r.ticks.toLocaleString("en-US")} ticks in ${r.seconds.toFixed(0)} s; lateness p50 ${fixed(r.lateness.p50Ms)} / p90 ${fixed(r.lateness.p90Ms)} / p99 ${fixed(r.lateness.p99Ms)} / max ${fixed(r.lateness.maxMs)} ms; tick duration p50 ${fixed(r.tickMsP50)} ms; ${r.modelRequests.toLocaleString("en-US")} model requests; worker RSS peak ${fixed(r.workerRssMb.peak, 1)} MB, last ${r.workerRssMb.last.map((m) => fixed(m, 1)).join(", ")} MB; database ${(r.dbBytes.database / MB).toFixed(1)} MB (ravenclaws ${(r.dbBytes.ours / MB).toFixed(1)} MB, pgboss ${(r.dbBytes.pgboss / MB).toFixed(1)} MB, ${r.dbBytes.journalRows.toLocaleString("en-US")} journal rows); SIGTERM: exits ${r.exits.join(", ")} in ${fixed(r.exitMs)} ms; load average ${r.load.start} at start, mean ${r.load.mean}, max ${r.load.max}, ${r.load.end} at end; heartbeats created in ${r.createSeconds.toFixed(1)} s.`,
    );
  }
  return notes;
}

/** The report printed by `npm run bench:scale`. */
export function formatScaleReport(result: ScaleResult, markdown = false): string {
  const m = result.machine;
  return [
    `ravenclaws bench:scale · ${m.cpus} × ${m.cpuModel} · Node ${m.node} · ${m.platform} · ${result.server} · ${result.seconds.toFixed(0)} s`,
    "",
    markdown ? formatMarkdownTable(result.rows) : formatTable(result.rows),
    "",
    ...result.notes.map((n) => `- ${n}`),
    ...(result.out ? ["", `JSON: ${path.relative(process.cwd(), result.out) || result.out}`] : []),
  ].join("\n");
}
