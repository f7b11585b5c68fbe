/**
 * `ravenclaws stop` and `wake` from another process: a heartbeat runs as one
 * child process (60-second interval, fake model server), the commands reach
 * it through its lock from others.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CliProcess, cleanEnv, runCli, startCli } from "../support/cli.js";
import { useCliHarness } from "../support/harness.js";

const h = useCliHarness();
let running: CliProcess | undefined;

// Registered after the harness's, so it runs first: the child goes before its server and dir.
afterEach(async () => {
  running?.child.kill("SIGKILL");
  await running?.exited;
  running = undefined;
});

const env = () => cleanEnv({ OPENAI_BASE_URL: h.server.baseURL });
const readState = h.stateOf;
const readTicks = async (id: string) => (await h.journalOf(id)).filter((e) => e.type === "tick");

/** Starts a heartbeat that sleeps 60 s after each tick; resolves once it sleeps after tick 1. */
async function startSleeper(id: string): Promise<CliProcess> {
  running = startCli(
    ["run", "--goal", "Tend the notes", "--id", id, "--tick-interval", "60", "--max-retries", "0"],
    { cwd: h.workdir, env: env() },
  );
  await running.waitForOutput("next tick at");
  return running;
}

describe("ravenclaws wake and stop", () => {
  it("wake makes a sleeping heartbeat tick now (wake reason 'wake'); stop shuts it down (exit 0, status shutdown)", async () => {
    const run = await startSleeper("w1");
    const pid = run.child.pid;

    const status = await runCli(["status", "--json"], { cwd: h.workdir, env: env() });
    expect(JSON.parse(status.stdout)[0]).toMatchObject({
      id: "w1",
      state: `running (pid ${pid})`,
      running: true,
      pid,
      host: os.hostname(),
      tick: 1,
    });
    const table = await runCli(["status"], { cwd: h.workdir, env: env() });
    expect(table.stdout).toMatch(
      new RegExp(
        `^w1\\s+running \\(pid ${pid}\\)\\s+1\\s+in \\d+s \\(\\d\\d:\\d\\d:\\d\\d\\)`,
        "m",
      ),
    );

    const wake = await runCli(["wake", "w1"], { cwd: h.workdir, env: env() });
    expect(wake.code, wake.stderr).toBe(0);
    expect(wake.stdout).toContain(
      `Woke heartbeat w1 (pid ${pid}): its next tick starts now instead of in`,
    );
    await run.waitForOutput("[tick 2] ok");
    expect(run.stderr()).toContain("wake requested");
    const ticks = await readTicks("w1");
    expect(ticks.map((t) => [t.tick, t.wakeReason])).toEqual([
      [1, "start"],
      [2, "wake"],
    ]);

    const stop = await runCli(["stop", "w1"], { cwd: h.workdir, env: env() });
    expect(stop.code, stop.stderr).toBe(0);
    expect(stop.stderr).toContain(`Stopping heartbeat w1 (pid ${pid})`);
    expect(stop.stdout).toContain("Heartbeat w1 shut down at tick 2; state saved.");
    // stop returned only after the process let go of its lock.
    await expect(fs.access(path.join(h.stateDir, "heartbeat-w1.lock"))).rejects.toThrow();
    const exited = await run.exited;
    expect(exited.code).toBe(0);
    expect(await readState("w1")).toMatchObject({ status: "shutdown", tick: 2, reason: "signal" });

    // Not running any more: exit 1 with a message that says so, for both commands.
    for (const command of ["stop", "wake"]) {
      const again = await runCli([command, "w1"], { cwd: h.workdir, env: env() });
      expect(again.code).toBe(1);
      expect(again.stderr).toContain("Heartbeat w1 is not running (state: shutdown at tick 2).");
      expect(again.stderr).toContain("ravenclaws run --id w1");
    }
  });

  it("refuses to reach a heartbeat whose lock is held on another host", async () => {
    await fs.mkdir(h.stateDir);
    await fs.writeFile(
      path.join(h.stateDir, "heartbeat-far.lock"),
      JSON.stringify({ pid: 4242, host: "elsewhere.example", since: "2026-01-01T00:00:00.000Z" }),
    );
    const status = await runCli(["status"], { cwd: h.workdir, env: env() });
    expect(status.stdout).toMatch(/^far\s+running on elsewhere\.example \(pid 4242\)/m);
    for (const command of ["stop", "wake"]) {
      const result = await runCli([command, "far"], { cwd: h.workdir, env: env() });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(
        `Heartbeat far runs on host elsewhere.example (pid 4242); it cannot be reached from ${os.hostname()}.`,
      );
    }
  });

  it("shows a heartbeat killed while sleeping as not running, and wake says so (exit 1)", async () => {
    const run = await startSleeper("k1");
    run.child.kill("SIGKILL");
    await run.exited;
    running = undefined;
    const status = await runCli(["status", "--json"], { cwd: h.workdir, env: env() });
    expect(JSON.parse(status.stdout)[0]).toMatchObject({
      id: "k1",
      status: "sleeping",
      state: "not running",
      running: false,
    });
    const show = await runCli(["show", "k1"], { cwd: h.workdir, env: env() });
    expect(show.stdout).toContain("ended without saving a final state");
    const wake = await runCli(["wake", "k1"], { cwd: h.workdir, env: env() });
    expect(wake.code).toBe(1);
    expect(wake.stderr).toContain("Heartbeat k1 is not running (state: not running at tick 1).");
  });

  it("stop gives up after --timeout with exit 1 when the process does not let go", async () => {
    const sleeper = await startSleeper("h1x");
    const lock = JSON.parse(await fs.readFile(path.join(h.stateDir, "heartbeat-h1x.lock"), "utf8"));
    // A stopped (SIGSTOP) process cannot act on the SIGTERM in time.
    process.kill(lock.pid, "SIGSTOP");
    try {
      const stop = await runCli(["stop", "h1x", "--timeout", "1"], { cwd: h.workdir, env: env() });
      expect(stop.code).toBe(1);
      expect(stop.stderr).toContain(
        `Heartbeat h1x (pid ${lock.pid}) has not shut down within 1 s.`,
      );
    } finally {
      process.kill(lock.pid, "SIGCONT");
    }
    // Once it can run again it handles the SIGTERM it was sent and shuts down cleanly.
    const exited = await sleeper.exited;
    expect(exited.code).toBe(0);
    expect(await readState("h1x")).toMatchObject({ status: "shutdown" });
  });
});
