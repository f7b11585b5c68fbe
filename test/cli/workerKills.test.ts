/**
 * Issue 15's multi-process test: several `ravenclaws worker` processes (the
 * built CLI) on one real PostgreSQL, SIGKILLed at random moments and
 * replaced, while heartbeats tick against a fake model whose answers take a
 * random while. Afterwards every heartbeat has each tick journaled exactly
 * once and its snapshot at the last tick, and the survivors exit 0 on SIGTERM.
 * The kill times come from a seeded generator (printed), so a failure can be
 * replayed with RAVENCLAWS_KILL_SEED.
 */
import * as fs from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { HeartbeatWiring } from "../../src/host/wiring.js";
import { type Database, openDatabase } from "../../src/services/pg/db.js";
import { pgStoreBackend } from "../../src/services/store/pgStore.js";
import { createInDatabase } from "../../src/worker/create.js";
import { type CliProcess, cleanEnv, startCli, tempDir } from "../support/cli.js";
import { scripted, startFakeOpenAI } from "../support/fakeOpenAI.js";
import { usePostgres } from "../support/postgres.js";

const pg = usePostgres();
const KEY = "sk-worker-kills-0123456789";
const HEARTBEATS = 12;
const TICKS = 4;
const cleanups: (() => Promise<unknown>)[] = [];
const children: CliProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    child.child.kill("SIGKILL");
    await child.exited;
  }
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
});

/** mulberry32: a small seeded generator, so a run can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function until<T>(check: () => Promise<T | undefined | false>, what: string, ms: number) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("workers killed at random", () => {
  it("several workers, several random SIGKILLs: every tick journaled exactly once, every snapshot at the last tick", async () => {
    const seed = Number(process.env.RAVENCLAWS_KILL_SEED ?? Date.now() % 100_000);
    const rand = random(seed);
    const script = scripted({});
    const fake = await startFakeOpenAI(async (req, i) => ({
      kind: "delay",
      ms: 50 + Math.floor(rand() * 250),
      reply: await script(req, i),
    }));
    cleanups.push(() => fake.close());
    const fresh = await pg.freshDatabase();
    cleanups.push(() => fresh.drop());
    const db: Database = await openDatabase(fresh.url);
    cleanups.push(() => db.close());
    const workdir = await fs.realpath(await tempDir("ravenclaws-kills-"));
    cleanups.push(() => fs.rm(workdir, { recursive: true, force: true }));

    const wiring = new HeartbeatWiring({ env: {}, stateDir: workdir, userConfig: null });
    const ids = Array.from({ length: HEARTBEATS }, (_, n) => `k-${n + 1}`);
    for (const id of ids) {
      const settings = await wiring.resolve({
        id,
        goal: `Goal of ${id}`,
        baseUrl: fake.baseURL,
        model: "fake",
        tickInterval: "1",
        maxTicks: String(TICKS),
        tools: false,
      });
      await createInDatabase(db, { id, goal: `Goal of ${id}`, workdir, settings });
    }

    const start = () => {
      const cli = startCli(
        ["worker", "--database-url", fresh.url, "--concurrency", "3", "--lease-ttl", "3", "--json"],
        { env: cleanEnv({ OPENAI_API_KEY: KEY }) },
      );
      children.push(cli);
      return cli;
    };
    let workers = [start(), start(), start()];
    await Promise.all(workers.map((w) => w.waitForOutput('"type":"ready"', 30_000)));
    const kills: string[] = [];
    const started = Date.now();
    for (let k = 0; k < 4; k++) {
      await new Promise((r) => setTimeout(r, 600 + Math.floor(rand() * 1_400)));
      const victim = workers[Math.floor(rand() * workers.length)] as CliProcess;
      victim.child.kill("SIGKILL");
      await victim.exited;
      kills.push(`${Date.now() - started} ms`);
      workers = [...workers.filter((w) => w !== victim), start()];
    }
    console.log(`worker kills (seed ${seed}): ${kills.join(", ")}`);

    await until(
      async () =>
        (await pgStoreBackend(db).summaries()).every((r) => r.status === "completed") || undefined,
      "every heartbeat completed",
      120_000,
    );
    const backend = pgStoreBackend(db);
    for (const id of ids) {
      const ticks = (await backend.heartbeat(id).readJournal())
        .filter((e) => e.type === "tick")
        .map((e) => e.tick);
      expect(ticks, `${id} (seed ${seed})`).toEqual([1, 2, 3, 4]);
      const state = await backend.heartbeat(id).peek();
      expect(state, id).toMatchObject({ status: "completed", tick: TICKS, reason: "max-ticks" });
      expect(state?.snapshot.context.tick, id).toBe(TICKS);
    }
    expect((await db.query("SELECT * FROM ravenclaws.leases")).rows).toEqual([]);
    for (const worker of workers) {
      worker.child.kill("SIGTERM");
      const exit = await worker.exited;
      expect(exit.code, exit.stderr).toBe(0);
    }
  }, 240_000);
});

describe("a worker that was only slow", () => {
  it("SIGSTOPped mid-tick past its lease: another worker runs the tick; once resumed, its stale commit is refused", async () => {
    const script = scripted({});
    let open: () => void = () => {};
    let gate: Promise<void> = Promise.resolve();
    let waiting = 0;
    const fake = await startFakeOpenAI(async (req, i) => {
      waiting++;
      await gate;
      waiting--;
      return script(req, i);
    });
    cleanups.push(() => fake.close());
    const fresh = await pg.freshDatabase();
    cleanups.push(() => fresh.drop());
    const db: Database = await openDatabase(fresh.url);
    cleanups.push(() => db.close());
    const workdir = await fs.realpath(await tempDir("ravenclaws-slow-"));
    cleanups.push(() => fs.rm(workdir, { recursive: true, force: true }));
    const wiring = new HeartbeatWiring({ env: {}, stateDir: workdir, userConfig: null });
    const settings = await wiring.resolve({
      id: "slow",
      goal: "Goal of slow",
      baseUrl: fake.baseURL,
      model: "fake",
      tickInterval: "1",
      maxTicks: "2",
      tools: false,
    });
    await createInDatabase(db, { id: "slow", goal: "Goal of slow", workdir, settings });
    const start = () => {
      const cli = startCli(["worker", "--database-url", fresh.url, "--lease-ttl", "2", "--json"], {
        env: cleanEnv({ OPENAI_API_KEY: KEY }),
      });
      children.push(cli);
      return cli;
    };
    gate = new Promise((resolve) => {
      open = resolve;
    });
    const a = start();
    await until(async () => waiting > 0 || undefined, "A's first model call", 30_000);
    a.child.kill("SIGSTOP");
    open();
    const b = start();
    try {
      await until(
        async () => (await pgStoreBackend(db).heartbeat("slow").peek())?.status === "completed",
        "B to finish the heartbeat",
        60_000,
      );
    } finally {
      a.child.kill("SIGCONT");
    }
    // A wakes up with its answer and tries to go on with tick 1: refused, nothing written.
    await until(
      async () => a.stdout().includes('"type":"job"') || undefined,
      "A to let go of its job",
      30_000,
    );
    const state = await pgStoreBackend(db).heartbeat("slow").peek();
    expect(state).toMatchObject({ status: "completed", tick: 2 });
    const ticks = (await pgStoreBackend(db).heartbeat("slow").readJournal())
      .filter((e) => e.type === "tick")
      .map((e) => e.tick);
    expect(ticks).toEqual([1, 2]);
    expect(b.stdout()).toContain('"type":"rescued"');
    for (const worker of [a, b]) {
      worker.child.kill("SIGTERM");
      expect((await worker.exited).code).toBe(0);
    }
  }, 120_000);
});
