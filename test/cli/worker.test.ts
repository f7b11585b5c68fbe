/**
 * Issue 15's acceptance, as users run it: the built CLI as child processes
 * against a real PostgreSQL (embedded, started by the test) and the fake
 * model over HTTP. 20 heartbeats made with `ravenclaws create … --tick-interval
 * 1 --max-ticks 5 --no-tools`; two `ravenclaws worker` processes; one
 * SIGKILLed after 4 s while it runs ticks and replaced by a third. Every
 * heartbeat ends `completed` at tick 5 with ticks 1 to 5 journaled exactly
 * once; the killed worker's ticks ran again elsewhere (rescued); SIGTERM ends
 * the survivors with exit 0 within a second.
 */
import * as fs from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { type Database, openDatabase } from "../../src/services/pg/db.js";
import { pgStoreBackend } from "../../src/services/store/pgStore.js";
import { type CliProcess, cleanEnv, runCli, startCli, tempDir } from "../support/cli.js";
import { type FakeOpenAI, scripted, startFakeOpenAI } from "../support/fakeOpenAI.js";
import { usePostgres } from "../support/postgres.js";

const pg = usePostgres();
const KEY = "sk-worker-acceptance-0123456789";
const cleanups: (() => Promise<unknown>)[] = [];
const children: CliProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    child.child.kill("SIGKILL");
    await child.exited;
  }
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
});

/**
 * The fake model, 150 ms a call, with a gate: while it is closed, requests
 * wait (each remembered with the heartbeat its prompt names), so a SIGKILL
 * can be made to land while a chosen tick's model call is in flight.
 */
async function gatedModel() {
  const script = scripted({});
  let open: () => void = () => {};
  let gate: Promise<void> = Promise.resolve();
  const waiting = new Set<string>();
  const fake: FakeOpenAI = await startFakeOpenAI(async (req, i) => {
    const id = /Keep notes (hb-\d+)/.exec(JSON.stringify(req.body))?.[1] ?? "";
    waiting.add(id);
    await gate;
    waiting.delete(id);
    return { kind: "delay", ms: 150, reply: await script(req, i) };
  });
  cleanups.push(() => fake.close());
  return {
    fake,
    waiting,
    close() {
      gate = new Promise((resolve) => {
        open = resolve;
      });
    },
    open: () => open(),
  };
}

/** The worker's --json events so far. */
type Event = { type: string; id?: string; jobId?: string; outcome?: string; why?: string };
const eventsOf = (cli: CliProcess): Event[] =>
  cli
    .stdout()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Event);

/** Jobs a worker took and had not finished: ticks in flight. */
function inFlight(cli: CliProcess): Set<string> {
  const open = new Map<string, string>();
  for (const e of eventsOf(cli)) {
    if (e.type === "tick.started" && e.jobId && e.id) open.set(e.jobId, e.id);
    if (e.type === "job" && e.jobId) open.delete(e.jobId);
  }
  return new Set(open.values());
}

function startWorker(url: string, ...extra: string[]): CliProcess {
  const cli = startCli(
    ["worker", "--database-url", url, "--json", "--concurrency", "4", ...extra],
    { env: cleanEnv({ OPENAI_API_KEY: KEY }) },
  );
  children.push(cli);
  return cli;
}

async function until<T>(check: () => Promise<T | undefined | false>, what: string, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function setup() {
  const model = await gatedModel();
  const fake = model.fake;
  const fresh = await pg.freshDatabase();
  cleanups.push(() => fresh.drop());
  const db: Database = await openDatabase(fresh.url);
  cleanups.push(() => db.close());
  const workdir = await fs.realpath(await tempDir("ravenclaws-workers-"));
  cleanups.push(() => fs.rm(workdir, { recursive: true, force: true }));
  return { fake, model, url: fresh.url, db, workdir };
}

describe("ravenclaws worker (issue 15 acceptance)", () => {
  it("20 heartbeats, two workers, one SIGKILLed after 4 s and replaced: all completed at tick 5, every tick journaled once, SIGTERM exits 0", async () => {
    const s = await setup();
    const ids = Array.from({ length: 20 }, (_, n) => `hb-${String(n + 1).padStart(2, "0")}`);
    const started = Date.now();
    // Made with the CLI, five at a time.
    for (let n = 0; n < ids.length; n += 5) {
      const made = await Promise.all(
        ids
          .slice(n, n + 5)
          .map((id) =>
            runCli(
              [
                "create",
                "--goal",
                `Keep notes ${id}`,
                "--id",
                id,
                "--workdir",
                s.workdir,
                "--tick-interval",
                "1",
                "--max-ticks",
                "5",
                "--no-tools",
                "--base-url",
                s.fake.baseURL,
                "--model",
                "fake",
                "--database-url",
                s.url,
              ],
              { env: cleanEnv() },
            ),
          ),
      );
      for (const [k, result] of made.entries()) {
        expect(result.code, result.stderr).toBe(0);
        expect(result.stdout).toBe(`${ids[n + k]}\n`);
      }
    }
    // Nothing ran yet: no model call, every heartbeat asleep at tick 0.
    expect(s.fake.chatRequests()).toHaveLength(0);
    const made = await pgStoreBackend(s.db).summaries();
    expect(made.map((r) => [r.id, r.status, r.tick])).toEqual(ids.map((id) => [id, "sleeping", 0]));

    const a = startWorker(s.url);
    const b = startWorker(s.url);
    await a.waitForOutput('"type":"ready"', 20_000);
    await b.waitForOutput('"type":"ready"', 20_000);
    const running = Date.now();
    await new Promise((r) => setTimeout(r, 4_000));
    // SIGKILL while it runs ticks: hold the model's answers until A has a tick
    // whose model call is in flight (so that tick cannot have committed), kill it, let go.
    s.model.close();
    const killed = await until(
      async () => {
        const mid = [...inFlight(a)].filter((id) => s.model.waiting.has(id));
        return mid.length > 0 ? mid : undefined;
      },
      "worker A to be mid-tick",
      20_000,
    );
    a.child.kill("SIGKILL");
    const dead = await a.exited;
    s.model.open();
    expect(dead.signal).toBe("SIGKILL");
    const c = startWorker(s.url);

    const status = async () => {
      const result = await runCli(["status", "--json", "--database-url", s.url], {
        env: cleanEnv(),
      });
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(result.stdout) as Array<{ id: string; status: string; tick: number }>;
    };
    await until(
      async () =>
        (await pgStoreBackend(s.db).summaries()).every((r) => r.status === "completed") ||
        undefined,
      "all 20 completed",
      120_000,
    );
    // What users see: status --json and logs --json over the database.
    const rows = await status();
    expect(rows.map((r) => [r.id, r.status, r.tick]).sort()).toEqual(
      ids.map((id) => [id, "completed", 5]),
    );
    const logsOf = async (id: string) => {
      const logs = await runCli(["logs", id, "--json", "--database-url", s.url], {
        env: cleanEnv(),
      });
      expect(logs.code, logs.stderr).toBe(0);
      return logs.stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as { type: string; tick?: number })
        .filter((e) => e.type === "tick")
        .map((e) => e.tick);
    };
    for (let n = 0; n < ids.length; n += 5) {
      const batch = ids.slice(n, n + 5);
      const ticks = await Promise.all(batch.map(logsOf));
      for (const [k, id] of batch.entries()) expect(ticks[k], id).toEqual([1, 2, 3, 4, 5]);
    }
    // The ticks A was running when it died were rescued by the others and ran again there.
    const rescued = new Set(
      [...eventsOf(b), ...eventsOf(c)].filter((e) => e.type === "rescued").map((e) => e.id),
    );
    for (const id of killed) expect(rescued, `rescue of ${id}`).toContain(id);
    // No lease left, and only the key of the workers reached the model (never stored).
    expect((await s.db.query("SELECT * FROM ravenclaws.leases")).rows).toEqual([]);
    const stored = await s.db.query("SELECT state::text AS t FROM ravenclaws.heartbeats");
    for (const row of stored.rows) expect(String(row.t)).not.toContain(KEY);

    for (const worker of [b, c]) {
      const sent = Date.now();
      worker.child.kill("SIGTERM");
      const exit = await worker.exited;
      expect(exit.code, exit.stderr).toBe(0);
      expect(Date.now() - sent).toBeLessThan(2_000);
      expect(exit.stderr).toContain("worker stopped");
    }
    console.log(
      `acceptance: create ${((running - started) / 1000).toFixed(1)} s, workers to all completed ${((Date.now() - running) / 1000).toFixed(1)} s, ${killed.length} tick(s) in flight at the SIGKILL (${killed.join(", ")})`,
    );
  }, 300_000);
});
