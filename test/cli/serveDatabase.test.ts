/**
 * `serve --database-url` as users run it: two built CLI processes on one
 * real PostgreSQL (embedded, a fresh database per test) and the fake model.
 * One `serve --no-ticks` (the dashboard's process: shows and controls) and
 * one `serve` with ticks (runs them, as `ravenclaws worker` does). Everything
 * is asked of the --no-ticks one, so whatever ticks was done by the other
 * process and reached this one through the database.
 */
import * as fs from "node:fs/promises";
import * as http from "node:http";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { HeartbeatDetail, HeartbeatList, JournalResponse } from "../../src/serve/api.types.js";
import { type CliProcess, cleanEnv, runCli, startCli } from "../support/cli.js";
import { message, scripted, toolCalls } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";
import { usePostgres } from "../support/postgres.js";

const pg = usePostgres();
// The model asks to write a file on a greeting tick (an ask rule holds it), and otherwise just answers.
const h = useCliHarness({
  handler: () =>
    scripted({
      execute: (_n, req) => {
        const messages = (req.body?.messages ?? []) as Array<{ role: string }>;
        if (messages.at(-1)?.role === "tool" || !JSON.stringify(req.body).includes("greeting")) {
          return message("Done for this tick.");
        }
        return toolCalls([
          { name: "write_file", arguments: { path: "hello.txt", content: "hello\n" } },
        ]);
      },
    }),
});
const KEY = "sk-x-serve-database-0123456789";
const running: CliProcess[] = [];
const drops: Array<() => Promise<void>> = [];

// Registered after the harness's, so it runs first: the children go before their model server.
afterEach(async () => {
  for (const cli of running.splice(0)) cli.child.kill("SIGKILL");
  for (const drop of drops.splice(0)) await drop().catch(() => {});
});

/** Everything any process or response said: the database password must be in none of it. */
const said: string[] = [];

async function firstLine(cli: CliProcess): Promise<string> {
  await cli.waitForOutput(/^http:\/\/\S+\n/, 30_000);
  return (cli.stdout().split("\n")[0] ?? "").trim();
}

async function api(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  const text = await res.text();
  said.push(text);
  return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
}

const post = (url: string, body: unknown = {}) =>
  api(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });

async function until<T>(
  check: () => Promise<T | undefined>,
  what: string,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The event stream of a server, as text received so far. */
function events(url: string): { text: () => string; close: () => void } {
  let text = "";
  const req = http.get(`${url}/api/events`, (res) => {
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      text += chunk;
    });
  });
  req.on("error", () => {});
  return { text: () => text, close: () => req.destroy() };
}

const detail = async (url: string, id: string) =>
  (await api(`${url}/api/heartbeats/${id}`)).json as HeartbeatDetail;

describe("ravenclaws serve --database-url", () => {
  it("--no-ticks shows and controls what another process ticks: created heartbeats complete, SSE carries its ticks, wake/stop/start reach it; the password is in no answer", async () => {
    const db = await pg.freshDatabase();
    drops.push(db.drop);
    const password = new URL(db.url).password;
    expect(password.length).toBeGreaterThan(3);

    const viewer = startCli(
      [
        "serve",
        "--database-url",
        db.url,
        "--no-ticks",
        "--port",
        "0",
        "--workdir",
        h.workdir,
        "--base-url",
        h.server.baseURL,
        "--model",
        "fake",
      ],
      { cwd: h.workdir, env: cleanEnv() },
    );
    running.push(viewer);
    // The ticking one finds the database in the environment.
    const ticker = startCli(["serve", "--port", "0", "--workdir", h.workdir, "--api-key", KEY], {
      cwd: h.workdir,
      env: cleanEnv({ RAVENCLAWS_DATABASE_URL: db.url }),
    });
    running.push(ticker);
    const url = await firstLine(viewer);
    await firstLine(ticker);
    await viewer.waitForOutput("no ticks here");
    const stream = events(url);

    // Created through the viewer, ticked by the other process.
    const ids: string[] = [];
    for (const goal of ["Write notes", "Tidy the list"]) {
      const created = await post(`${url}/api/heartbeats`, { goal, tickInterval: 0, maxTicks: 3 });
      expect(created.status, created.text).toBe(201);
      ids.push((created.json as HeartbeatDetail).id);
    }
    for (const id of ids) {
      const done = await until(async () => {
        const d = await detail(url, id);
        return d.status === "completed" || d.status === "failed" ? d : undefined;
      }, `${id} to end`);
      expect(done).toMatchObject({ id, status: "completed", tick: 3, reason: "max-ticks" });
      expect(done.settings).toMatchObject({ baseUrl: h.server.baseURL, model: "fake" });
      const journal = (await api(`${url}/api/heartbeats/${id}/journal?type=tick`))
        .json as JournalResponse;
      expect(journal.entries.map((e) => e.tick)).toEqual([1, 2, 3]);
    }
    // The model was called with the ticking process's key, which no heartbeat saved.
    expect(h.server.requests.some((r) => r.headers.authorization === `Bearer ${KEY}`)).toBe(true);
    const list = (await api(`${url}/api/heartbeats`)).json as HeartbeatList;
    expect(list.heartbeats.map((s) => [s.id, s.status, s.tick]).sort()).toEqual(
      ids.map((id) => [id, "completed", 3]).sort(),
    );
    // The viewer runs no ticks, yet its stream carried them (a tick line of one of them).
    const tickEvent = await until(
      async () =>
        stream
          .text()
          .split("\n\n")
          .filter((block) => block.startsWith("event: tick\n"))
          .map((block) => JSON.parse(block.slice(block.indexOf("data: ") + 6)))
          .find((data) => ids.includes(data.id)),
      "a tick event on the viewer's stream",
      10_000,
    );
    expect(tickEvent.entry).toMatchObject({ type: "tick" });
    expect(tickEvent.heartbeat.id).toBe(tickEvent.id);

    // wake: a heartbeat asleep for an hour ticks now, on the other process.
    const sleeper = await post(`${url}/api/heartbeats`, {
      goal: "Sleep a while",
      id: "sleeper",
      tickInterval: 3600,
      maxTicks: 10,
      tools: false,
    });
    expect(sleeper.status, sleeper.text).toBe(201);
    await until(async () => {
      const d = await detail(url, "sleeper");
      return d.status === "sleeping" && d.tick === 1 ? d : undefined;
    }, "sleeper asleep after tick 1");
    // Bad requests name the field: an id taken, a workdir that is not there.
    const again = await post(`${url}/api/heartbeats`, { goal: "Again", id: "sleeper" });
    expect(again.status, again.text).toBe(409);
    const nowhere = await post(`${url}/api/heartbeats`, { goal: "Lost", workdir: "no/such/dir" });
    expect(nowhere.status, nowhere.text).toBe(400);
    expect(nowhere.json.error.field).toBe("workdir");
    const woken = await post(`${url}/api/heartbeats/sleeper/wake`);
    expect(woken.status, woken.text).toBe(202);
    await until(
      async () => ((await detail(url, "sleeper")).tick === 2 ? true : undefined),
      "tick 2",
    );

    // stop: a heartbeat ticking every second stops ticking on the other process.
    await post(`${url}/api/heartbeats`, {
      goal: "Tick often",
      id: "busy",
      tickInterval: 1,
      maxTicks: 50,
      tools: false,
    });
    await until(
      async () => ((await detail(url, "busy")).tick >= 2 ? true : undefined),
      "busy at tick 2",
    );
    const stopped = await post(`${url}/api/heartbeats/busy/stop`);
    expect(stopped.status, stopped.text).toBe(202);
    expect(stopped.json.heartbeat.status).toBe("stopped");
    const frozen = stopped.json.heartbeat.tick as number;
    // Meanwhile the other process ticks a marker three times, a second apart (the stopped
    // one, a second apart too, would have ticked at least twice more)...
    await post(`${url}/api/heartbeats`, {
      goal: "Mark time",
      id: "marker",
      tickInterval: 1,
      maxTicks: 3,
      tools: false,
    });
    await until(
      async () => ((await detail(url, "marker")).status === "completed" ? true : undefined),
      "marker completed",
    );
    // ...and the stopped one at most finished the tick in flight when the stop came.
    const after = await detail(url, "busy");
    expect(after.status).toBe("stopped");
    expect(after.tick).toBeLessThanOrEqual(frozen + 1);
    const nothing = await post(`${url}/api/heartbeats/busy/wake`);
    expect(nothing.json.heartbeat.status).toBe("stopped");

    // start: it ticks again, on the other process.
    const started = await post(`${url}/api/heartbeats/busy/start`);
    expect(started.status, started.text).toBe(202);
    await until(
      async () => ((await detail(url, "busy")).tick > after.tick ? true : undefined),
      "busy ticking again",
    );

    // approve: a write held by an ask rule waits on the other process; approved here, it runs there.
    const greeter = await post(`${url}/api/heartbeats`, {
      goal: "Write a greeting to hello.txt",
      id: "greeter",
      tickInterval: 3600,
      maxTicks: 5,
      toolAsk: ["write"],
    });
    expect(greeter.status, greeter.text).toBe(201);
    const waiting = await until(async () => {
      const d = await detail(url, "greeter");
      return d.approvals.length > 0 ? d : undefined;
    }, "the greeter's write to wait for approval");
    expect(waiting).toMatchObject({ pendingApprovals: 1, approvals: [{ tool: "write_file" }] });
    await expect(fs.stat(path.join(h.workdir, "hello.txt"))).rejects.toThrow();
    const approved = await post(`${url}/api/heartbeats/greeter/approve`, {
      callId: waiting.approvals[0]?.callId,
    });
    expect(approved.status, approved.text).toBe(200);
    await until(
      async () => ((await detail(url, "greeter")).tick === 1 ? true : undefined),
      "the greeter's tick to end",
    );
    await expect(fs.readFile(path.join(h.workdir, "hello.txt"), "utf8")).resolves.toBe("hello\n");
    const decided = (await api(`${url}/api/heartbeats/greeter/journal?type=approval`))
      .json as JournalResponse;
    expect(decided.entries).toMatchObject([{ decision: "approve", via: "command" }]);

    stream.close();
    said.push(stream.text());
    for (const cli of [viewer, ticker]) {
      cli.child.kill("SIGTERM");
      const exit = await cli.exited;
      expect(exit.code, exit.stderr).toBe(0);
      said.push(exit.stdout, exit.stderr);
    }
    for (const text of said) expect(text).not.toContain(password);
  }, 120_000);

  it("--no-ticks without a database is refused (exit 2); a database that cannot be reached says where, without the password", async () => {
    const secret = "hunter2-not-shown";
    const [alone, gone] = await Promise.all([
      runCli(["serve", "--workdir", h.workdir, "--port", "0", "--no-ticks"], { env: cleanEnv() }),
      runCli(
        [
          "serve",
          "--workdir",
          h.workdir,
          "--port",
          "0",
          "--database-url",
          `postgres://someone:${secret}@127.0.0.1:1/nothing`,
        ],
        { env: cleanEnv() },
      ),
    ]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain("--no-ticks needs --database-url");
    expect(gone.code, gone.stderr).toBe(1);
    expect(gone.stdout).toBe("");
    expect(gone.stderr).toContain("127.0.0.1:1");
    expect(gone.stderr).not.toContain(secret);
  }, 30_000);
});
