/**
 * `ravenclaws serve` as users run it: the built CLI as a child process, the
 * fake model server, real HTTP. Issue 14's acceptance: the URL is the first
 * line; two heartbeats created through the API reach tick 3 and `completed`;
 * their journals have 3 ticks; `status --json` lists both; SIGTERM ends it
 * with exit 0 within 2 seconds. And a non-loopback --host gets a generated token.
 */
import { readFile, rm } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { HeartbeatDetail, JournalResponse } from "../../src/serve/api.types.js";
import { type CliProcess, cleanEnv, readTree, runCli, startCli, tempDir } from "../support/cli.js";
import { useCliHarness } from "../support/harness.js";

const h = useCliHarness();
const KEY = "sk-x-serve-acceptance-0123456789";
let serving: CliProcess | undefined;

// Registered after the harness's, so it runs first: the child goes before its server and dir.
afterEach(async () => {
  serving?.child.kill("SIGKILL");
  await serving?.exited;
  serving = undefined;
});

/** The first whole line of stdout, once printed. */
async function firstLine(cli: CliProcess): Promise<string> {
  const line = await until(
    async () => (cli.stdout().includes("\n") ? cli.stdout().split("\n")[0] : undefined),
    "serve's first line",
    20_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; stderr:\n${cli.stderr()}`);
  });
  return line ?? "";
}

const bodies: string[] = [];
async function api(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  const text = await res.text();
  bodies.push(text);
  return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
}

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

describe("ravenclaws serve", () => {
  it("prints its URL first; two heartbeats created through the API reach tick 3 and completed; status lists both; SIGTERM exits 0 within 2 s", async () => {
    serving = startCli(
      [
        "serve",
        "--workdir",
        h.workdir,
        "--port",
        "0",
        "--base-url",
        h.server.baseURL,
        "--api-key",
        KEY,
        "--model",
        "fake",
      ],
      { cwd: h.workdir, env: cleanEnv() },
    );
    const url = await firstLine(serving);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const ids: string[] = [];
    for (const goal of ["Write notes", "Tidy the list"]) {
      const created = await api(`${url}/api/heartbeats`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ goal, tickInterval: 0, maxTicks: 3 }),
      });
      expect(created.status, created.text).toBe(201);
      ids.push((created.json as HeartbeatDetail).id);
    }
    for (const id of ids) {
      const done = await until(async () => {
        const d = (await api(`${url}/api/heartbeats/${id}`)).json as HeartbeatDetail;
        return d.status === "completed" || d.status === "failed" ? d : undefined;
      }, `${id} to end`);
      expect(done).toMatchObject({ id, status: "completed", tick: 3, reason: "max-ticks" });
      expect(done.settings).toMatchObject({ baseUrl: h.server.baseURL, model: "fake" });
      const journal = (await api(`${url}/api/heartbeats/${id}/journal`)).json as JournalResponse;
      expect(journal.entries.filter((e) => e.type === "tick").map((e) => e.tick)).toEqual([
        1, 2, 3,
      ]);
    }
    // The model was called with the serve process's key, which no heartbeat saved.
    expect(h.server.requests.some((r) => r.headers.authorization === `Bearer ${KEY}`)).toBe(true);
    const list = await api(`${url}/api/heartbeats`);
    expect(list.json.heartbeats.map((s: { id: string }) => s.id).sort()).toEqual([...ids].sort());

    const status = await runCli(["status", "--json", "--workdir", h.workdir], { env: cleanEnv() });
    expect(status.code, status.stderr).toBe(0);
    const rows = JSON.parse(status.stdout) as Array<{ id: string; status: string; tick: number }>;
    expect(rows.map((r) => [r.id, r.status, r.tick]).sort()).toEqual(
      ids.map((id) => [id, "completed", 3]).sort(),
    );

    // A heartbeat asleep between ticks when SIGTERM comes: saved, and the exit is still prompt.
    const sleeper = await api(`${url}/api/heartbeats`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        goal: "Sleep a while",
        id: "sleeper",
        tickInterval: 3600,
        tools: false,
      }),
    });
    expect(sleeper.status, sleeper.text).toBe(201);
    await until(async () => {
      const d = (await api(`${url}/api/heartbeats/sleeper`)).json as HeartbeatDetail;
      return d.status === "sleeping" && d.tick === 1 ? d : undefined;
    }, "sleeper asleep after tick 1");

    const sent = Date.now();
    serving.child.kill("SIGTERM");
    const exit = await serving.exited;
    expect(Date.now() - sent).toBeLessThan(2_000);
    expect(exit.code, exit.stderr).toBe(0);
    expect(JSON.parse(await readFile(h.stateFile("sleeper"), "utf8"))).toMatchObject({
      status: "sleeping",
      tick: 1,
    });

    // The key is in no response and no file of the state dir.
    for (const body of bodies) expect(body).not.toContain(KEY);
    for (const { file, text } of await readTree(h.stateDir)) expect(text, file).not.toContain(KEY);
  }, 90_000);

  it("a non-loopback --host without --token prints a generated token, and requests without it get 401", async () => {
    serving = startCli(
      [
        "serve",
        "--workdir",
        h.workdir,
        "--port",
        "0",
        "--host",
        "0.0.0.0",
        "--base-url",
        h.server.baseURL,
      ],
      { cwd: h.workdir, env: cleanEnv() },
    );
    const url = await firstLine(serving);
    await serving.waitForOutput(/token: \S+\n/);
    const token = /token: (\S+)\n/.exec(serving.stdout())?.[1] ?? "";
    expect(token.length).toBeGreaterThanOrEqual(32);
    const local = `http://127.0.0.1:${new URL(url).port}`;
    expect((await api(`${local}/api/heartbeats`)).status).toBe(401);
    const ok = await api(`${local}/api/heartbeats`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(ok.status).toBe(200);
    serving.child.kill("SIGTERM");
    expect((await serving.exited).code).toBe(0);
  }, 30_000);

  it("bad options exit 2 naming them: a short token, a port out of range, a port in use", async () => {
    const short = await runCli(["serve", "--workdir", h.workdir, "--port", "0", "--token", "abc"], {
      env: cleanEnv(),
    });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain("--token must be at least 16 characters");
    const range = await runCli(["serve", "--workdir", h.workdir, "--port", "70000"], {
      env: cleanEnv(),
    });
    expect(range.code).toBe(2);
    expect(range.stderr).toContain("--port must be a whole number from 0 to 65535");
    serving = startCli(["serve", "--workdir", h.workdir, "--port", "0"], { env: cleanEnv() });
    const url = await firstLine(serving);
    const other = await tempDir();
    const busy = await runCli(["serve", "--workdir", other, "--port", new URL(url).port], {
      env: cleanEnv(),
    });
    await rm(other, { recursive: true, force: true });
    expect(busy.code, busy.stderr).toBe(2);
    expect(busy.stderr).toContain("already in use");
    expect(busy.stdout).toBe("");
  }, 30_000);
});
