/**
 * Schedules end to end: `--active-hours` defers ticks and records the skip,
 * `--cron` and the schedule options are validated.
 */
import * as fs from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { cleanEnv, runCli, startCli } from "../support/cli.js";
import { scripted } from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const h = useCliHarness({ handler: () => scripted({}), tickInterval: null });
const { runArgs: args, journalFile } = h;
const env = () => cleanEnv({ OPENAI_API_KEY: "k" });
const hhmm = (d: Date) => d.toISOString().slice(11, 16);

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("schedules", () => {
  it("a heartbeat started outside its active hours waits for the window, records the skip, and the state file shows the next tick", async () => {
    // A one-hour window opening two hours from now (UTC), so now is outside it.
    const opens = new Date(Date.now() + 2 * 3600_000);
    opens.setUTCSeconds(0, 0);
    const closes = new Date(opens.getTime() + 3600_000);
    const window = `${hhmm(opens)}-${hhmm(closes)}`;
    const cli = startCli(
      args("--id", "night", "--goal", "Tidy up", "--active-hours", window, "--timezone", "UTC"),
      { env: env() },
    );
    const skip = await until(async () => {
      const text = await fs.readFile(journalFile("night"), "utf8");
      return text
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
        .find((e) => e.type === "skip");
    });
    expect(skip).toMatchObject({ reason: "outside-active-hours", next: opens.toISOString() });
    // The signal handler is in place once the start banner is out.
    await cli.waitForOutput(/heartbeat night started/);
    cli.child.kill("SIGTERM");
    const result = await cli.exited;
    expect(result.code, result.stderr).toBe(0);
    expect(h.server.chatRequests()).toHaveLength(0);
    const state = JSON.parse(await fs.readFile(h.stateFile("night"), "utf8"));
    expect(state).toMatchObject({ status: "shutdown", tick: 0, nextTickAt: opens.toISOString() });
  });

  it.each([
    [["--cron", "every day"], /--cron "every day" is not a valid cron expression/],
    [["--active-hours", "8-22"], /--active-hours.*HH:MM-HH:MM/],
    [["--active-hours", "25:00-26:00"], /--active-hours.*HH:MM-HH:MM/],
    [["--timezone", "Mars/Olympus_Mons"], /--timezone.*IANA time zone/],
    [["--max-tokens", "-5"], /--max-tokens.*0 or more/],
    [["--failure-backoff", "soon"], /--failure-backoff.*number/],
  ])("refuses %j with exit 2 naming the option", async (extra, pattern) => {
    const result = await runCli(args("--goal", "g", ...extra), { env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(pattern);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
