/**
 * A heartbeat exists on disk from its first moment (issue 11, point 1), and
 * its schedule is data that survives a stop and a kill (point 6): the state
 * file is written before the first model call and before any wait for the
 * active hours; `status`, `show`, `logs`, `stop` and `run --id` see it; a
 * `--cron` heartbeat keeps its time across a resume.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import { DEFAULT_ASSESSMENT, jsonMessage, scripted } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep NOTES.md summarising the TODOs in this repo";
const h = useCliHarness({ tickInterval: null, flags: ["--failure-backoff", "0"] });
const { runArgs: args, stateOf, journalOf } = h;
const env = () => cleanEnv({ OPENAI_API_KEY: "k" });
const hhmm = (d: Date) => d.toISOString().slice(11, 16);
/** Read commands find the heartbeats of the run's workdir. */
const read = (...command: string[]) =>
  runCli([...command, "--workdir", h.workdir], { env: env(), cwd: h.workdir });

describe("a heartbeat exists on disk from its first moment", () => {
  it("acceptance: SIGKILL two seconds into the first tick: status --json shows it with its goal, show/logs/stop see it, run --id without --goal resumes it to tick 1", async () => {
    // The first assessment takes a minute to come back.
    h.server.setHandler(
      scripted({
        assess: (n) =>
          n === 1
            ? { kind: "delay", ms: 60_000, reply: jsonMessage(DEFAULT_ASSESSMENT) }
            : jsonMessage(DEFAULT_ASSESSMENT),
      }),
    );
    const cli = startCli(args("--goal", GOAL, "--id", "early", "--tick-interval", "0"), {
      env: env(),
    });
    await cli.waitForOutput("[tick 1] assessing");
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(h.server.chatRequests()).toHaveLength(1);
    cli.child.kill("SIGKILL");
    expect((await cli.exited).signal).toBe("SIGKILL");

    const status = await read("status", "--json");
    expect(status.code, status.stderr).toBe(0);
    const rows = JSON.parse(status.stdout);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id: "early",
      goal: GOAL,
      status: "sleeping",
      state: "not running",
      running: false,
      tick: 0,
    });

    const show = await read("show", "early");
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`goal:       ${GOAL}`);
    const logs = await read("logs", "early");
    expect(logs.code, logs.stderr).toBe(0);
    // Nothing is running: stop says so about this heartbeat (not "no such heartbeat").
    const stop = await read("stop", "early");
    expect(stop.code).toBe(1);
    expect(stop.stderr).toContain("Heartbeat early is not running");

    const resumed = await runCli(args("--id", "early", "--max-ticks", "1"), { env: env() });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain("resumed at tick 0");
    expect(await stateOf("early")).toMatchObject({
      goal: GOAL,
      tick: 1,
      status: "completed",
      reason: "max-ticks",
    });
    const ticks = (await journalOf("early")).filter((e) => e.type === "tick");
    expect(ticks.map((t) => [t.tick, t.status])).toEqual([[1, "ok"]]);
  });

  it("the state file is there before the first model call answers", async () => {
    h.server.setHandler(scripted({ assess: () => ({ kind: "hang" }) }));
    const cli = startCli(args("--goal", GOAL, "--id", "first"), { env: env() });
    await cli.waitForOutput("[tick 1] assessing");
    const state = await stateOf("first");
    expect(state).toMatchObject({ id: "first", goal: GOAL, status: "sleeping", tick: 0, seq: 1 });
    expect(Date.parse(state.createdAt)).toBeLessThanOrEqual(Date.parse(state.nextTickAt));
    cli.child.kill("SIGTERM");
    expect((await cli.exited).code).toBe(0);
  });

  it("a heartbeat waiting for its --active-hours window is on disk with its goal and the window's opening, visible to status and show, and stop ends it", async () => {
    // A one-hour window opening two hours from now (UTC), so now is outside it.
    const opens = new Date(Date.now() + 2 * 3600_000);
    opens.setUTCSeconds(0, 0);
    const closes = new Date(opens.getTime() + 3600_000);
    const window = `${hhmm(opens)}-${hhmm(closes)}`;
    const cli = startCli(
      args("--id", "night", "--goal", GOAL, "--active-hours", window, "--timezone", "UTC"),
      { env: env() },
    );
    await cli.waitForOutput(/heartbeat night started/);
    await until(async () => (await stateOf("night")).nextTickAt === opens.toISOString());

    const status = await read("status", "--json");
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)[0]).toMatchObject({
      id: "night",
      goal: GOAL,
      status: "sleeping",
      running: true,
      tick: 0,
      nextTickAt: opens.toISOString(),
    });
    const show = await read("show", "night");
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toContain(`goal:       ${GOAL}`);
    // The skip is journaled with the start write.
    const skip = (await journalOf("night")).find((e) => e.type === "skip");
    expect(skip).toMatchObject({ reason: "outside-active-hours", next: opens.toISOString() });

    const stop = await read("stop", "night");
    expect(stop.code, stop.stderr).toBe(0);
    expect((await cli.exited).code).toBe(0);
    expect(h.server.chatRequests()).toHaveLength(0);
    expect(await stateOf("night")).toMatchObject({
      status: "shutdown",
      tick: 0,
      nextTickAt: opens.toISOString(),
    });
  });

  it("--goal is required to start a heartbeat: run --id of an unknown id says so, and leaves no lock behind", async () => {
    const result = await runCli(args("--id", "nobody"), { env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--goal is required to start a heartbeat");
    expect(result.stderr).toContain('"nobody"');
    const left = await fs.readdir(h.stateDir).catch(() => []);
    expect(left.filter((n) => n.startsWith("heartbeat-nobody"))).toEqual([]);
  });
});

describe("lock ghosts", () => {
  it("a run killed during its first write leaves no ghost: status does not list it, its lock is removed, show says there is no such heartbeat, and run --goal starts it afresh", async () => {
    const killed = await runCli(args("--goal", GOAL, "--id", "ghost", "--max-ticks", "1"), {
      env: { ...env(), RAVENCLAWS_CRASH_AT: "state:after-temp-write:1" },
    });
    expect(killed.signal).toBe("SIGKILL");
    const lock = path.join(h.stateDir, "heartbeat-ghost.lock");
    await fs.access(lock);
    await expect(fs.access(h.stateFile("ghost"))).rejects.toThrow();

    const status = await read("status", "--json");
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual([]);
    await expect(fs.access(lock)).rejects.toThrow();
    const show = await read("show", "ghost");
    expect(show.code).toBe(2);
    expect(show.stderr).toContain('There is no heartbeat "ghost"');

    const again = await runCli(args("--goal", GOAL, "--id", "ghost", "--max-ticks", "1"), {
      env: env(),
    });
    expect(again.code, again.stderr).toBe(0);
    expect(await stateOf("ghost")).toMatchObject({ tick: 1, status: "completed" });
  });

  it("a live run's lock is never taken for a ghost", async () => {
    h.server.setHandler(scripted({ assess: () => ({ kind: "hang" }) }));
    const cli = startCli(args("--goal", GOAL, "--id", "alive"), { env: env() });
    await cli.waitForOutput("[tick 1] assessing");
    // As if it had not written yet: only its lock tells it is there.
    await fs.rename(h.stateFile("alive"), `${h.stateFile("alive")}.aside`);
    const status = await read("status", "--json");
    expect(JSON.parse(status.stdout)).toMatchObject([{ id: "alive", running: true }]);
    await fs.access(path.join(h.stateDir, "heartbeat-alive.lock"));
    await fs.rename(`${h.stateFile("alive")}.aside`, h.stateFile("alive"));
    cli.child.kill("SIGTERM");
    await cli.exited;
  });
});

describe("--cron end to end", () => {
  it("ticks on the cron's seconds, and a resume after SIGKILL waits for the saved cron time", async () => {
    // Every 3 seconds (croner's optional seconds field).
    const cron = ["--cron", "*/3 * * * * *", "--timezone", "UTC"];
    const cli = startCli(args("--goal", GOAL, "--id", "cron", ...cron), { env: env() });
    await cli.waitForOutput("next tick at");
    const saved = await stateOf("cron");
    expect(saved).toMatchObject({ status: "sleeping", tick: 1 });
    expect(new Date(saved.nextTickAt).getUTCSeconds() % 3).toBe(0);
    expect(new Date(saved.nextTickAt).getUTCMilliseconds()).toBe(0);
    cli.child.kill("SIGKILL");
    await cli.exited;

    const resumed = await runCli(args("--id", "cron", "--max-ticks", "3", ...cron), {
      env: env(),
    });
    expect(resumed.code, resumed.stderr).toBe(0);
    const ticks = (await journalOf("cron")).filter((e) => e.type === "tick");
    expect(ticks.map((t) => t.tick)).toEqual([1, 2, 3]);
    // Tick 2 waited for the saved cron time; tick 3 was planned at the next
    // match after tick 2 and did not start before it.
    expect(Date.parse(ticks[1].startedAt)).toBeGreaterThanOrEqual(Date.parse(saved.nextTickAt));
    const planned = new Date(ticks[1].nextTickAt);
    expect(planned.getUTCSeconds() % 3).toBe(0);
    expect(planned.getUTCMilliseconds()).toBe(0);
    expect(planned.getTime()).toBeGreaterThan(Date.parse(ticks[1].finishedAt));
    expect(Date.parse(ticks[2].startedAt)).toBeGreaterThanOrEqual(planned.getTime());
  });

  it("acceptance: a yearly --cron heartbeat stopped by SIGTERM, then by SIGKILL, resumed with a bare run --id from a directory whose ravenclaws.toml sets a 2-second interval, makes no model call within 5 s and keeps its nextTickAt", async () => {
    const cron = ["--cron", "0 0 1 1 *", "--timezone", "UTC"];
    const first = await runCliUntil(
      "next tick at",
      args("--goal", GOAL, "--id", "yearly", ...cron),
    );
    first.child.kill("SIGTERM");
    expect((await first.exited).code).toBe(0);
    const saved = await stateOf("yearly");
    const newYear = `${new Date().getUTCFullYear() + 1}-01-01T00:00:00.000Z`;
    expect(saved).toMatchObject({ status: "shutdown", tick: 1, nextTickAt: newYear });
    const calls = h.server.chatRequests().length;

    await fs.writeFile(
      path.join(h.workdir, "ravenclaws.toml"),
      "[heartbeat]\ntick_interval_secs = 2\n",
    );
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      // A bare resume: the cron and time zone are the saved settings.
      const again = startCli(args("--id", "yearly"), {
        env: env(),
        cwd: h.workdir,
      });
      await again.waitForOutput(/resumed at tick 1/);
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      expect(h.server.chatRequests()).toHaveLength(calls);
      again.child.kill(signal);
      await again.exited;
      expect(await stateOf("yearly")).toMatchObject({ tick: 1, nextTickAt: newYear });
    }
  });
});

/** Starts `run` and waits until it prints `text`. */
async function runCliUntil(text: string, argv: string[]) {
  const cli = startCli(argv, { env: env() });
  await cli.waitForOutput(text);
  return cli;
}

async function until(probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
