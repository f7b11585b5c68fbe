/**
 * `ravenclaws logs <id>` as a child process: a line per tick from a real
 * run's journal, `--json` raw lines, a torn last line, and `-f` following
 * appended lines until it is interrupted.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanEnv, runCli, startCli, tempDir } from "../support/cli.js";
import {
  type FakeOpenAI,
  message,
  scripted,
  startFakeOpenAI,
  toolCalls,
} from "../support/fakeOpenAI.js";

let server: FakeOpenAI;
let dir: string;
let journal: string;

beforeAll(async () => {
  server = await startFakeOpenAI(
    scripted({
      execute: (n) =>
        n % 2 === 1
          ? toolCalls([
              { name: "write_file", arguments: { path: "a.md", content: "a" } },
              { name: "read_file", arguments: { path: "missing.md" } },
            ])
          : message(`Report ${n / 2}: wrote a.md.`),
    }),
  );
  dir = await tempDir();
  const run = await runCli(
    [
      "run",
      "--goal",
      "Write a.md",
      "--id",
      "l1",
      "--tick-interval",
      "0",
      "--max-ticks",
      "2",
      "--quiet",
    ],
    { cwd: dir, env: env() },
  );
  expect(run.code, run.stderr).toBe(0);
  // --quiet: nothing but the end summary (no errors happened).
  expect(run.stderr).toBe("");
  expect(run.stdout).toMatch(
    /^Heartbeat completed after 2 ticks \(max ticks reached\)\. Tokens: \d+/,
  );
  journal = path.join(dir, ".ravenclaws", "heartbeat-l1.jsonl");
});
afterAll(async () => {
  await server.close();
  await fs.rm(dir, { recursive: true, force: true });
});

function env() {
  return cleanEnv({ OPENAI_BASE_URL: server.baseURL });
}

const tickLine = (tick: number, extra: Record<string, unknown> = {}) =>
  `${JSON.stringify({
    type: "tick",
    seq: 100 + tick,
    tick,
    status: "ok",
    wakeReason: "wake",
    startedAt: "2026-03-01T10:00:00.000Z",
    finishedAt: "2026-03-01T10:00:02.500Z",
    durationMs: 2500,
    assessment: `appended tick ${tick}`,
    result: null,
    errors: [],
    usage: { calls: 1, promptTokens: 1000, completionTokens: 234, totalTokens: 1234 },
    toolCalls: [],
    ...extra,
  })}\n`;

describe("ravenclaws logs", () => {
  it("prints one line per tick (tool calls folded in) and the end", async () => {
    const result = await runCli(["logs", "l1"], { cwd: dir, env: env() });
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines).toHaveLength(4);
    // The run record: how shell_exec was confined.
    expect(lines.shift()).toMatch(
      /^run\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+shell_exec \S.*--sandbox auto: /,
    );
    expect(lines[0]).toMatch(
      /^#1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+ok\s+start\s+[\d.]+s\s+60 tok\s+2 tools \(1 not ok\)\s+Report 1: wrote a\.md\.$/,
    );
    expect(lines[1]).toMatch(
      /^#2\s.*\sok\s+timer\s.*2 tools \(1 not ok\)\s+Report 2: wrote a\.md\.$/,
    );
    expect(lines[2]).toMatch(/^end\s.*completed \(max-ticks\) at tick 2$/);
  });

  it("--json prints the journal's lines as they are", async () => {
    const result = await runCli(["logs", "l1", "--json"], { cwd: dir, env: env() });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(await fs.readFile(journal, "utf8"));
    const types = result.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).type);
    expect(types.filter((t) => t === "tick")).toHaveLength(2);
    expect(types).toContain("tool");
  });

  it("ignores a torn last line", async () => {
    const before = await fs.readFile(journal, "utf8");
    const plain = (await runCli(["logs", "l1"], { cwd: dir, env: env() })).stdout;
    await fs.appendFile(journal, '{"type":"tick","tick":3,"status":"o');
    try {
      const result = await runCli(["logs", "l1"], { cwd: dir, env: env() });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toBe(plain);
      const json = await runCli(["logs", "l1", "--json"], { cwd: dir, env: env() });
      expect(json.stdout).toBe(before);
    } finally {
      await fs.writeFile(journal, before);
    }
  });

  it("-f prints what is there, then each line appended (a line in two writes once whole), until SIGTERM", async () => {
    const before = await fs.readFile(journal, "utf8");
    const follow = startCli(["logs", "l1", "-f"], { cwd: dir, env: env() });
    try {
      await follow.waitForOutput(/^end\s/m);
      await fs.appendFile(journal, tickLine(3));
      await follow.waitForOutput("appended tick 3");
      expect(follow.stdout()).toMatch(
        /^#3\s.*\sok\s+wake\s+2\.5s\s+1,234 tok\s+0 tools\s+appended tick 3$/m,
      );

      // Tick 4 whole, then the first half of tick 5 in the same write: once
      // tick 4 shows, the follower has read the half line too. It must keep
      // it back (not print it, not skip past it) until the rest arrives.
      const line = tickLine(5);
      await fs.appendFile(journal, tickLine(4) + line.slice(0, 40));
      await follow.waitForOutput("appended tick 4");
      expect(follow.stdout().trim().split("\n").at(-1)).toMatch(/^#4\s.*appended tick 4$/);
      await fs.appendFile(journal, line.slice(40));
      await follow.waitForOutput("appended tick 5");

      follow.child.kill("SIGTERM");
      const result = await follow.exited;
      expect(result.code).toBe(0);
      expect(
        result.stdout
          .trim()
          .split("\n")
          .map((l) => l.split(/\s+/)[0]),
      ).toEqual(["run", "#1", "#2", "end", "#3", "#4", "#5"]);
    } finally {
      follow.child.kill("SIGKILL");
      await fs.writeFile(journal, before);
    }
  });

  it("exits 2 for an unknown id, listing the known ones", async () => {
    const result = await runCli(["logs", "other"], { cwd: dir, env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('There is no heartbeat "other" in');
    expect(result.stderr).toContain("Known ids there: l1.");
  });
});
