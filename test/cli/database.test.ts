/**
 * The commands against a database (issue 15 point 3), as child processes on
 * a real embedded PostgreSQL: heartbeats made by real `run`s in the file mode
 * (the fake model) are moved in with `migrate --from`; `status`, `show`,
 * `logs` print what they printed from the files; `logs -f` follows a row
 * another connection appends; `wake`/`stop`/`start` act through the tick
 * queue; `approve`/`deny` from another process reach the approvals wait that
 * reads the decisions table; `migrate --to` brings a heartbeat back whole
 * and `run --id` continues it.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForDecisions } from "../../src/services/approvalWait.js";
import { waitingRoundOf } from "../../src/services/awaiting.js";
import { type Database, openDatabase } from "../../src/services/pg/db.js";
import { pgDecisions } from "../../src/services/pg/decisions.js";
import { TICK_QUEUE } from "../../src/services/pg/queue.js";
import { acquireLock } from "../../src/services/store/index.js";
import { pgStoreBackend } from "../../src/services/store/pgStore.js";
import { cleanEnv, runCli, startCli, tempDir } from "../support/cli.js";
import {
  type FakeOpenAI,
  message,
  scripted,
  startFakeOpenAI,
  toolCalls,
} from "../support/fakeOpenAI.js";
import { usePostgres } from "../support/postgres.js";

const pg = usePostgres();
let server: FakeOpenAI;
/** Workdirs of the heartbeats made in the file mode: l1 (completed), s1 (shut down), ap (waiting for approval). */
const dirs: Record<"l1" | "s1" | "ap", string> = { l1: "", s1: "", ap: "" };
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-database-test-key" });
const stateDirOf = (id: keyof typeof dirs) => path.join(dirs[id], ".ravenclaws");

const run = (workdir: string, ...args: string[]) => [
  "run",
  "--base-url",
  server.baseURL,
  "--workdir",
  workdir,
  "--max-retries",
  "0",
  ...args,
];

beforeAll(async () => {
  server = await startFakeOpenAI(
    scripted({
      execute: (n) =>
        n === 1
          ? toolCalls([
              { id: "w1", name: "write_file", arguments: { path: "out.md", content: "hello" } },
            ])
          : message("Done."),
    }),
  );
  for (const id of Object.keys(dirs) as Array<keyof typeof dirs>) dirs[id] = await tempDir();
  await fs.writeFile(path.join(dirs.ap, "ravenclaws.toml"), '[tools]\nask = ["write(**)"]\n');
  const completed = runCli(
    run(
      dirs.l1,
      "--id",
      "l1",
      "--goal",
      "Count to two",
      "--no-tools",
      "--tick-interval",
      "0",
    ).concat("--max-ticks", "2"),
    { env: env() },
  );
  // s1 sleeps an hour after its first tick; SIGTERM saves it `shutdown`.
  const sleeper = startCli(
    run(dirs.s1, "--id", "s1", "--goal", "Keep watch", "--no-tools", "--tick-interval", "3600"),
    { env: env() },
  );
  const asking = startCli(
    run(
      dirs.ap,
      "--id",
      "ap",
      "--goal",
      "Write out.md",
      "--tick-interval",
      "0",
      "--max-ticks",
      "1",
    ),
    { cwd: dirs.ap, env: env() },
  );
  await Promise.all([
    sleeper.waitForOutput("next tick at", 30_000),
    asking.waitForOutput("awaiting approval", 30_000),
  ]);
  sleeper.child.kill("SIGTERM");
  asking.child.kill("SIGTERM");
  for (const done of [await sleeper.exited, await asking.exited, await completed]) {
    expect(done.code, done.stderr).toBe(0);
  }
}, 90_000);

afterAll(async () => {
  await server?.close();
  for (const dir of Object.values(dirs))
    if (dir) await fs.rm(dir, { recursive: true, force: true });
});

const cli = (...args: string[]) => runCli(args, { env: env() });
const parse = (text: string) => JSON.parse(text);
const lines = (text: string) =>
  text
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
const omit = (value: Record<string, unknown>, ...keys: string[]) =>
  Object.fromEntries(Object.entries(value).filter(([key]) => !keys.includes(key)));

async function fresh(): Promise<{ url: string; db: Database; close(): Promise<void> }> {
  const made = await pg.freshDatabase();
  const db = await openDatabase(made.url, { max: 2 });
  return {
    url: made.url,
    db,
    async close() {
      await db.close();
      await made.drop();
    },
  };
}

describe("commands against the database", () => {
  it("status, show and logs print what they printed from the files; migrate there and back keeps snapshot and journal; run --id continues it", async () => {
    const where = ["--workdir", dirs.l1];
    const [status, show, logs, logsJson, state] = await Promise.all([
      cli("status", "--json", ...where),
      cli("show", "l1", "--json", ...where),
      cli("logs", "l1", ...where),
      cli("logs", "l1", "--json", ...where),
      fs.readFile(path.join(stateDirOf("l1"), "heartbeat-l1.json"), "utf8"),
    ]);
    const before = { status, show, logs, logsJson, state };
    const { url, db, close } = await fresh();
    try {
      const moved = await cli("migrate", "--from", stateDirOf("l1"), "--database-url", url);
      expect(moved.code, moved.stderr).toBe(0);
      expect(moved.stdout).toMatch(
        /^Moved heartbeat l1 \(tick 2, completed, \d+ journal records\)/,
      );
      // The source is moved aside, not deleted: no file-mode run finds it again.
      await expect(fs.stat(path.join(stateDirOf("l1"), "heartbeat-l1.json"))).rejects.toThrow();
      const aside = path.join(stateDirOf("l1"), "moved-to-database", "l1");
      expect(await fs.readFile(path.join(aside, "heartbeat-l1.json"), "utf8")).toBe(before.state);
      expect(parse(await fs.readFile(path.join(aside, "moved.json"), "utf8"))).toMatchObject({
        id: "l1",
        tick: 2,
      });
      expect((await cli("status", ...where)).stdout).toMatch(/^No heartbeats in /);

      const inDb = ["--database-url", url];
      const [status, show, logs, logsJson, text, unknown] = await Promise.all([
        cli("status", "--json", ...inDb),
        cli("show", "l1", "--json", ...inDb),
        cli("logs", "l1", ...inDb),
        cli("logs", "l1", "--json", ...inDb),
        cli("status", ...inDb),
        cli("show", "nope", ...inDb),
      ]);
      expect(status.code, status.stderr).toBe(0);
      const [fileRow] = parse(before.status.stdout);
      const [dbRow] = parse(status.stdout);
      expect(omit(dbRow, "stateFile")).toEqual(omit(fileRow, "stateFile"));
      expect(dbRow.state).toBe("completed (max ticks)");
      expect(dbRow.stateFile).not.toContain(pg.server.password);
      expect(omit(parse(show.stdout), "files")).toEqual(omit(parse(before.show.stdout), "files"));
      expect(logs.stdout).toBe(before.logs.stdout);
      expect(logs.stdout).toMatch(/^#1 .*\n#2 .*\nend /m);
      expect(lines(logsJson.stdout)).toEqual(lines(before.logsJson.stdout));
      // Text status over the database names the same state.
      expect(text.stdout).toMatch(/l1\s+completed \(max ticks\)\s+2\/2/);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(/no heartbeat "nope" in the database .*Known ids there: l1/s);

      // A re-run finds nothing left to move; a crash between the commit and the
      // move aside (the files put back) is finished, not moved twice.
      const again = await cli("migrate", "--from", stateDirOf("l1"), ...inDb);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/nothing to move/);
      for (const name of ["heartbeat-l1.json", "heartbeat-l1.jsonl"])
        await fs.copyFile(path.join(aside, name), path.join(stateDirOf("l1"), name));
      const rows = async () =>
        (await db.query("SELECT id FROM ravenclaws.journal WHERE heartbeat_id = 'l1'")).rowCount;
      const journaled = await rows();
      const finished = await cli("migrate", "--from", stateDirOf("l1"), ...inDb);
      expect(finished.code, finished.stderr).toBe(0);
      expect(finished.stdout).toMatch(/^Finished moving heartbeat l1/);
      expect(await rows()).toBe(journaled);

      // And back, into another state dir.
      const back = await tempDir();
      try {
        const target = path.join(back, "state");
        const returned = await cli("migrate", "--to", target, ...inDb);
        expect(returned.code, returned.stderr).toBe(0);
        expect(returned.stdout).toMatch(/^Moved heartbeat l1 \(tick 2, completed/);
        expect(parse(await fs.readFile(path.join(target, "heartbeat-l1.json"), "utf8"))).toEqual(
          parse(before.state),
        );
        expect(lines(await fs.readFile(path.join(target, "heartbeat-l1.jsonl"), "utf8"))).toEqual(
          lines(before.logsJson.stdout),
        );
        expect((await cli("status", ...inDb)).stdout).toMatch(/^No heartbeats in the database/);
        const twice = await cli("migrate", "--to", target, ...inDb);
        expect(twice.code, twice.stderr).toBe(0);
        expect(twice.stdout).toMatch(/nothing to move/);

        const continued = await cli(
          ...run(dirs.l1, "--state-dir", target, "--id", "l1", "--continue", "--max-ticks", "3"),
          "--no-tools",
        );
        expect(continued.code, continued.stderr).toBe(0);
        const state = parse(await fs.readFile(path.join(target, "heartbeat-l1.json"), "utf8"));
        expect(state).toMatchObject({ status: "completed", tick: 3 });
        const ticks = lines(await fs.readFile(path.join(target, "heartbeat-l1.jsonl"), "utf8"))
          .filter((e) => e.type === "tick")
          .map((e) => e.tick);
        expect(ticks).toEqual([1, 2, 3]);
      } finally {
        await fs.rm(back, { recursive: true, force: true });
      }
    } finally {
      await close();
    }
  }, 120_000);

  it("wake, stop and start act through the tick queue; logs -f prints a row another connection appends; a worker's live lease is named and refused by migrate", async () => {
    const { url, db, close } = await fresh();
    const inDb = ["--database-url", url];
    const queued = async () =>
      (
        await db.query<{ due: boolean }>(
          "SELECT start_after <= now() AS due FROM pgboss.job WHERE name = $1 AND singleton_key = 's1' AND state = 'created'",
          [TICK_QUEUE],
        )
      ).rows;
    const row = async () =>
      (
        await db.query<{ stopped: boolean; woken: boolean }>(
          "SELECT stopped_at IS NOT NULL AS stopped, wake_requested_at IS NOT NULL AS woken FROM ravenclaws.heartbeats WHERE id = 's1'",
        )
      ).rows[0];
    try {
      // Running in the files (this process holds its lock): refused, nothing moved.
      const lock = await acquireLock(path.join(stateDirOf("s1"), "heartbeat-s1.lock"));
      const held = await cli("migrate", "--from", stateDirOf("s1"), ...inDb);
      await lock.release();
      expect(held.code).toBe(1);
      expect(held.stderr).toContain(`Heartbeat s1 is running (pid ${process.pid} on `);
      expect(held.stderr).toMatch(/1 of 1 heartbeat was not moved: s1/);
      expect((await db.query("SELECT 1 FROM ravenclaws.heartbeats")).rowCount).toBe(0);
      await fs.stat(path.join(stateDirOf("s1"), "heartbeat-s1.json"));

      const moved = await cli("migrate", "--from", stateDirOf("s1"), ...inDb);
      expect(moved.code, moved.stderr).toBe(0);
      expect(moved.stdout).toMatch(/^Moved heartbeat s1 \(tick 1, shutdown/);
      // Shut down in the files: queued for the next worker at once.
      expect(await queued()).toEqual([{ due: true }]);

      const follow = startCli(["logs", "s1", "-f", "--json", ...inDb], { env: env() });
      await follow.waitForOutput('"type":"end"', 20_000);
      await db.query(
        "INSERT INTO ravenclaws.journal (heartbeat_id, seq, type, entry) VALUES ('s1', NULL, 'note', $1)",
        [
          JSON.stringify({
            type: "note",
            at: new Date().toISOString(),
            text: "from another connection",
          }),
        ],
      );
      await follow.waitForOutput("from another connection", 20_000);
      follow.child.kill("SIGTERM");
      const followed = await follow.exited;
      expect(followed.code, followed.stderr).toBe(0);

      await db.query("DELETE FROM pgboss.job WHERE name = $1", [TICK_QUEUE]);
      const wake = await cli("wake", "s1", ...inDb);
      expect(wake.code, wake.stderr).toBe(0);
      expect(wake.stdout).toMatch(/^Woke heartbeat s1: a worker starts its next tick now/);
      expect(await queued()).toEqual([{ due: true }]);
      expect(await row()).toMatchObject({ woken: true, stopped: false });

      const stop = await cli("stop", "s1", ...inDb);
      expect(stop.code, stop.stderr).toBe(0);
      expect(stop.stdout).toMatch(/^Heartbeat s1 stopped at tick 1; .*ravenclaws start s1/);
      expect(await row()).toMatchObject({ stopped: true });
      expect(await queued()).toEqual([]);
      expect((await cli("status", ...inDb)).stdout).toMatch(/s1\s+stopped\s/);
      const refused = await cli("wake", "s1", ...inDb);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/s1 is stopped .*ravenclaws start s1/s);

      const start = await cli("start", "s1", ...inDb);
      expect(start.code, start.stderr).toBe(0);
      expect(start.stdout).toMatch(/^Started heartbeat s1: a worker runs its next tick now/);
      expect(await row()).toMatchObject({ stopped: false });
      expect(await queued()).toEqual([{ due: true }]);

      // A worker elsewhere in the middle of a tick: its lease.
      await db.query(
        "INSERT INTO ravenclaws.leases (heartbeat_id, owner, token, expires_at) VALUES ('s1', $1, 't', now() + interval '1 minute')",
        [JSON.stringify({ pid: 4242, host: "worker-b", since: new Date().toISOString() })],
      );
      const [running] = parse((await cli("status", "--json", ...inDb)).stdout);
      expect(running).toMatchObject({ id: "s1", running: true, pid: 4242, host: "worker-b" });
      expect(running.state).toBe("running on worker-b (pid 4242)");
      const target = path.join(dirs.s1, "back");
      const busy = await cli("migrate", "--to", target, ...inDb);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toMatch(
        /s1 is running on a worker \(pid 4242 on worker-b\); it was not moved/,
      );
      await expect(fs.stat(path.join(target, "heartbeat-s1.json"))).rejects.toThrow();
      // stop waits until that worker lets go of it.
      const stopping = startCli(["stop", "s1", "--timeout", "20", ...inDb], { env: env() });
      await stopping.waitForOutput(
        "Stopping heartbeat s1 (a tick runs on worker-b, pid 4242)",
        20_000,
      );
      expect(await row()).toMatchObject({ stopped: true });
      await db.query("DELETE FROM ravenclaws.leases WHERE heartbeat_id = 's1'");
      const stopped = await stopping.exited;
      expect(stopped.code, stopped.stderr).toBe(0);
      expect(stopped.stdout).toMatch(/^Heartbeat s1 stopped at tick 1/);

      // Back to the files: the stop on purpose goes with it.
      const back = await cli("migrate", "--to", target, ...inDb);
      expect(back.code, back.stderr).toBe(0);
      expect(
        parse(await fs.readFile(path.join(target, "heartbeat-s1.host"), "utf8")),
      ).toMatchObject({
        stopped: { by: "ravenclaws migrate" },
      });
      expect(
        (
          await db.query(
            "SELECT 1 FROM pgboss.job WHERE singleton_key = 's1' AND state = 'created'",
          )
        ).rowCount,
      ).toBe(0);
      expect((await db.query("SELECT 1 FROM ravenclaws.heartbeats")).rowCount).toBe(0);
      // And in again: the stop on purpose comes along, so no worker runs it.
      const again = await cli("migrate", "--from", target, "--workdir", dirs.s1, ...inDb);
      expect(again.code, again.stderr).toBe(0);
      expect(await row()).toMatchObject({ stopped: true });
      expect(await queued()).toEqual([]);
    } finally {
      await close();
    }
  }, 90_000);

  it("approvals lists a waiting call from the database; deny from another process reaches the approvals wait that reads the decisions table", async () => {
    const listedInFiles = await cli("approvals", "--json", "--workdir", dirs.ap);
    expect(parse(listedInFiles.stdout)).toMatchObject([{ id: "ap", callId: "w1" }]);
    const { url, db, close } = await fresh();
    const inDb = ["--database-url", url];
    try {
      const moved = await cli("migrate", "--from", stateDirOf("ap"), ...inDb);
      expect(moved.code, moved.stderr).toBe(0);
      const listed = await cli("approvals", "--json", ...inDb);
      expect(listed.code, listed.stderr).toBe(0);
      expect(parse(listed.stdout)).toEqual(parse(listedInFiles.stdout));
      expect((await cli("status", ...inDb)).stdout).toMatch(/awaiting approval \(1 call\)/);

      // The wait a worker runs for this heartbeat, reading the decisions table.
      const store = pgStoreBackend(db).heartbeat("ap");
      const round = waitingRoundOf(await store.peek());
      if (!round) throw new Error("ap does not wait for approval in the database");
      const controller = new AbortController();
      const waiting = waitForDecisions({
        input: round,
        id: "ap",
        signal: controller.signal,
        store,
        decisions: pgDecisions(db),
        now: Date.now,
        options: { timeoutSec: null, fallback: "allow", pollMs: 50 },
      });
      const deny = startCli(["deny", "ap", "--reason", "not now", ...inDb], { env: env() });
      const denied = await deny.exited;
      expect(denied.code, denied.stderr).toBe(0);
      expect(denied.stdout).toMatch(
        /^Denied call w1 of ap; no worker is on heartbeat ap right now/,
      );
      const { decisions } = await waiting;
      expect(decisions).toEqual([
        expect.objectContaining({
          callId: "w1",
          decision: "deny",
          reason: "not now",
          via: "command",
          by: { user: expect.any(String), pid: deny.child.pid },
        }),
      ]);
      const journal = await store.readJournal();
      expect(journal.filter((e) => e.type === "approval")).toMatchObject([
        { callId: "w1", decision: "deny", reason: "not now", via: "command" },
      ]);
      // Journaled, then taken out of the inbox.
      expect((await db.query("SELECT 1 FROM ravenclaws.decisions")).rowCount).toBe(0);
      // A second decision for the same round is refused while one is stored.
      await pgDecisions(db).write([
        {
          schemaVersion: 1,
          id: "ap",
          attempt: round.attempt,
          iteration: round.iteration,
          callId: "w1",
          decision: "approve",
          reason: null,
          by: { user: "x", pid: 1 },
          at: new Date().toISOString(),
        },
      ]);
      const twice = await cli("approve", "ap", ...inDb);
      expect(twice.code).toBe(1);
      expect(twice.stderr).toMatch(/already decided \(approve by x/);
    } finally {
      await close();
    }
  }, 90_000);

  it("the file mode never loads the PostgreSQL client; --database-url does", async () => {
    const dir = await tempDir();
    try {
      const log = path.join(dir, "modules.log");
      const hook = path.join(dir, "hook.mjs");
      // Records every module the CLI resolves (a module hook, in its own thread).
      await fs.writeFile(
        hook,
        `import { register } from "node:module";
register("data:text/javascript," + encodeURIComponent(\`
import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, result.url + String.fromCharCode(10));
  return result;
}\`));
`,
      );
      const loadsPg = async (...args: string[]) => {
        await fs.rm(log, { force: true });
        const result = await runCli(args, {
          env: { ...env(), NODE_OPTIONS: `--import ${hook}` },
        });
        const modules = await fs.readFile(log, "utf8").catch(() => `(none) ${result.stderr}`);
        expect(modules).toContain("/dist/cli.js");
        return { result, pg: /\/node_modules\/(pg|pg-boss)\//.test(modules) };
      };
      const files = await loadsPg("status", "--workdir", dir);
      expect(files.result.code, files.result.stderr).toBe(0);
      expect(files.pg).toBe(false);
      const { url, close } = await fresh();
      try {
        const database = await loadsPg("status", "--database-url", url);
        expect(database.result.code, database.result.stderr).toBe(0);
        expect(database.pg).toBe(true);
      } finally {
        await close();
      }
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it("approve from another process reaches a heartbeat waiting on a worker: the call runs, journaled as decided by that command", async () => {
    server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                {
                  id: "w9",
                  name: "write_file",
                  arguments: { path: "approved.md", content: "yes" },
                },
              ])
            : message("Done."),
      }),
    );
    const { url, close } = await fresh();
    const inDb = ["--database-url", url];
    const workdir = await tempDir();
    let worker: ReturnType<typeof startCli> | undefined;
    try {
      const made = await cli(
        "create",
        "--id",
        "wk",
        "--goal",
        "Write approved.md",
        "--workdir",
        workdir,
        "--base-url",
        server.baseURL,
        "--tick-interval",
        "0",
        "--max-ticks",
        "1",
        "--ask",
        "write(**)",
        ...inDb,
      );
      expect(made.code, made.stderr).toBe(0);
      worker = startCli(["worker", "--concurrency", "1", ...inDb], { env: env() });
      const deadline = Date.now() + 30_000;
      let waiting: Array<{ id: string; callId: string }> = [];
      while (waiting.length === 0) {
        if (Date.now() > deadline)
          throw new Error(`no call waits; worker said:\n${worker.stderr()}`);
        waiting = parse((await cli("approvals", "--json", ...inDb)).stdout);
      }
      expect(waiting).toMatchObject([{ id: "wk", callId: "w9" }]);
      await expect(fs.stat(path.join(workdir, "approved.md"))).rejects.toThrow();
      // A stop while the tick waits on the worker: no new tick, and no wait for a decision.
      const stop = await cli("stop", "wk", ...inDb);
      expect(stop.code, stop.stderr).toBe(0);
      expect(stop.stdout).toMatch(
        /^Heartbeat wk is stopped: no new tick starts\. Its tick 1 still waits on /,
      );
      const approve = startCli(["approve", "wk", ...inDb], { env: env() });
      const approved = await approve.exited;
      expect(approved.code, approved.stderr).toBe(0);
      expect(approved.stdout).toMatch(
        /^Approved call w9 of wk; the heartbeat picks it up within a second/,
      );
      for (;;) {
        const [row] = parse((await cli("status", "--json", ...inDb)).stdout);
        if (row.status === "completed") break;
        if (Date.now() > deadline + 30_000)
          throw new Error(`wk did not complete: ${JSON.stringify(row)}`);
      }
      expect(await fs.readFile(path.join(workdir, "approved.md"), "utf8")).toBe("yes");
      const journal = lines((await cli("logs", "wk", "--json", ...inDb)).stdout);
      expect(journal.filter((e) => e.type === "approval")).toMatchObject([
        { callId: "w9", decision: "approve", via: "command", by: { pid: approve.child.pid } },
      ]);
      worker.child.kill("SIGTERM");
      expect((await worker.exited).code).toBe(0);
    } finally {
      worker?.child.kill("SIGKILL");
      await close();
      await fs.rm(workdir, { recursive: true, force: true });
    }
  }, 90_000);
});
