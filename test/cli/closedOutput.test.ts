/**
 * A closed stdout or stderr never kills the CLI: `logs <id> | head -1` ends
 * quietly, and a `run` whose output pipe closes early goes on ticking and
 * persisting; a slow reader still gets all the output. Real shell pipelines (`bash -c "… | head -1"`) around the built
 * CLI, against the fake OpenAI server.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { CLI, type CliResult, cleanEnv, runCli } from "../support/cli.js";
import { type Handler, scripted } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const h = useCliHarness({ flags: ["--goal", "Keep NOTES.md tidy"] });
const env = () => cleanEnv({ OPENAI_API_KEY: "sk-test-0123456789", NODE_BIN: process.execPath });

const running = new Set<ChildProcess>();
afterEach(() => {
  for (const child of running) if (child.pid) process.kill(-child.pid, "SIGKILL");
  running.clear();
});

/** Printed by the reader side of {@link pipeline} once no process holds the pipe's read end. */
const CLOSED = "PIPE-CLOSED";

/**
 * Runs `ravenclaws <args> <redirect> | <reader>`, by default
 * `ravenclaws <args> <redirect> | { head -n 1; exec 0<&-; echo PIPE-CLOSED >&2; }`
 * under `set -o pipefail`, so the exit code is the CLI's when it failed.
 * Once `head` has read a line and exited, the group closes its stdin: from
 * then on nobody reads the pipe and each write by the CLI fails with EPIPE.
 */
function pipeline(
  args: string[],
  redirect: string,
  reader = `{ head -n 1; exec 0<&-; echo ${CLOSED} >&2; }`,
) {
  const child = spawn(
    "bash",
    ["-c", `set -o pipefail; "$NODE_BIN" "$@" ${redirect} | ${reader}`, "bash", CLI, ...args],
    // Its own process group, so a test that fails can kill the CLI too.
    { cwd: h.workdir, env: env(), stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  running.add(child);
  let stdout = "";
  let stderr = "";
  let onClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    onClosed = resolve;
  });
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
    if (stderr.includes(CLOSED)) onClosed();
  });
  const exited = new Promise<CliResult>((resolve) => {
    child.on("close", (code, signal) => {
      running.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, closed, exited };
}

/** A journal line for tick `n`, as the runtime writes them. */
const tickLine = (n: number) =>
  JSON.stringify({
    type: "tick",
    seq: n,
    tick: n,
    status: "ok",
    wakeReason: "timer",
    startedAt: "2026-03-01T10:00:00.000Z",
    finishedAt: "2026-03-01T10:00:01.000Z",
    durationMs: 1000,
    assessment: `filler tick ${n} ${"x".repeat(80)}`,
    result: null,
    errors: [],
    usage: { calls: 2, promptTokens: 20, completionTokens: 10, totalTokens: 30 },
    toolCalls: [],
  });

/** A real heartbeat `id` whose journal then holds 3,000 ticks: far more than a pipe's 64 KiB buffer. */
async function longJournal(id: string): Promise<string> {
  const run = await runCli(h.runArgs("--id", id, "--max-ticks", "1", "--quiet"), { env: env() });
  expect(run.code, run.stderr).toBe(0);
  const lines = Array.from({ length: 3000 }, (_, i) => tickLine(i + 2)).join("\n");
  await fs.appendFile(h.journalFile(id), `${lines}\n`);
  return fs.readFile(h.journalFile(id), "utf8");
}

describe("output pipes", () => {
  it("`logs <id> | head -1` prints the first line and ends quietly (exit 0, no stack trace)", async () => {
    await longJournal("long");
    const whole = await runCli(["logs", "long"], { cwd: h.workdir, env: env() });
    expect(whole.stdout.split("\n").length).toBeGreaterThan(3000);
    const result = await pipeline(["logs", "long"], "").exited;
    expect(result.stderr).toBe(`${CLOSED}\n`);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${whole.stdout.split("\n")[0]}\n`);
  });

  it("`logs <id> -f --json | head -1` prints the first raw line and stops following once nobody reads", async () => {
    const journal = await longJournal("long-follow");
    const result = await pipeline(["logs", "long-follow", "-f", "--json"], "").exited;
    expect(result.stderr).toBe(`${CLOSED}\n`);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${journal.split("\n")[0]}\n`);
  });

  it("a slow reader (`logs <id> --json | { sleep 3; cat; }`) still gets every line: exiting waits for the pipe", async () => {
    const journal = await longJournal("slow-reader");
    const result = await pipeline(["logs", "slow-reader", "--json"], "", "{ sleep 3; cat; }")
      .exited;
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.length).toBe(journal.length);
    expect(result.stdout).toBe(journal);
  });

  /** A model that answers tick 1 at once and every later call only once the pipe is closed. */
  function gatedModel(closed: Promise<void>): Handler {
    const script = scripted({});
    return async (req, index) => {
      // Tick 1 is three calls (assess, plan, execute).
      if (index >= 3) await closed;
      return script(req, index);
    };
  }

  for (const { what, redirect, extra } of [
    { what: "stderr (`run 2>&1 | head -1`)", redirect: "2>&1", extra: [] },
    {
      what: "stdout (`run --json 2>/dev/null | head -1`)",
      redirect: "2>/dev/null",
      extra: ["--json"],
    },
  ]) {
    it(`a run whose ${what} closes after its first line completes its --max-ticks and persists them`, async () => {
      const id = extra.length > 0 ? "piped-json" : "piped";
      let release: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      h.server.setHandler(gatedModel(gate));
      const run = pipeline(h.runArgs("--id", id, "--max-ticks", "4", ...extra), redirect);
      // Ticks 2 to 4, and everything they print, come after nobody reads the pipe any more.
      await run.closed;
      release();
      const result = await run.exited;
      expect(result.stderr).toBe(`${CLOSED}\n`);
      expect(result.code).toBe(0);
      expect(result.stdout.split("\n")).toHaveLength(2);
      expect(h.server.chatRequests()).toHaveLength(12);
      expect(await h.stateOf(id)).toMatchObject({
        tick: 4,
        status: "completed",
        reason: "max-ticks",
      });
      const ticks = (await h.journalOf(id)).filter((e) => e.type === "tick").map((e) => e.tick);
      expect(ticks).toEqual([1, 2, 3, 4]);
    });
  }
});
