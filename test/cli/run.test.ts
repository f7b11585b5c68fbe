/**
 * `ravenclaws run` end to end: the built CLI as a child process, the real
 * openai client, a fake OpenAI-compatible server on 127.0.0.1, real files.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, readTree, runCli, startCli } from "../support/cli.js";
import {
  classify,
  errorReply,
  jsonMessage,
  message,
  scripted,
  startFakeOpenAI,
  toolCalls,
} from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const API_KEY = "sk-test-SECRET-0123456789abcdef";
const GOAL = "Keep NOTES.md summarising the TODOs in this repo";

const assessment = (goalComplete: boolean, extra: Record<string, unknown> = {}) =>
  jsonMessage({
    goalComplete,
    actionNeeded: true,
    assessment: goalComplete ? "All done." : "Work remains.",
    progressSummary: "Wrote some notes.",
    ...extra,
  });

const h = useCliHarness({ model: "test-model", flags: ["--failure-backoff", "0"] });
const { runArgs: args, stateOf: readState, journalOf: readJournal } = h;
const env = () => cleanEnv({ OPENAI_API_KEY: API_KEY });

describe("ravenclaws run", () => {
  it("completes when the model reports completion at the third assessment, with the files it wrote", async () => {
    h.server.setHandler(
      scripted({
        assess: (n) => assessment(n === 3),
        execute: (n) =>
          n % 2 === 1
            ? toolCalls([
                {
                  name: "write_file",
                  arguments: {
                    path: `notes/tick-${(n + 1) / 2}.md`,
                    content: `tick ${(n + 1) / 2}`,
                  },
                },
              ])
            : message("Wrote the notes."),
      }),
    );
    const result = await runCli(args("--goal", GOAL, "--max-ticks", "10", "--id", "t1"), {
      env: env(),
    });
    expect(result.stderr).not.toContain("error");
    expect(result.code).toBe(0);
    const state = await readState("t1");
    expect(state).toMatchObject({
      schemaVersion: 3,
      id: "t1",
      goal: GOAL,
      completed: true,
      tick: 3,
      status: "completed",
      reason: "goal-met",
    });
    expect(await fs.readFile(path.join(h.workdir, "notes/tick-1.md"), "utf8")).toBe("tick 1");
    expect(await fs.readFile(path.join(h.workdir, "notes/tick-2.md"), "utf8")).toBe("tick 2");
    const ticks = (await readJournal("t1")).filter((e) => e.type === "tick");
    expect(ticks.map((t) => [t.tick, t.status])).toEqual([
      [1, "ok"],
      [2, "ok"],
      [3, "ok"],
    ]);
    expect(result.stdout).toContain("goal met at tick 3");

    // Running it again does nothing: no model call, same state file.
    const requestsBefore = h.server.chatRequests().length;
    const bytes = await fs.readFile(h.stateFile("t1"));
    const again = await runCli(args("--id", "t1"), { env: env() });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain("already met its goal at tick 3");
    expect(h.server.chatRequests()).toHaveLength(requestsBefore);
    expect(await fs.readFile(h.stateFile("t1"))).toEqual(bytes);
    // Usage per call and per tick (the fake reports 10 prompt + 5 completion tokens a call).
    expect(ticks[0].modelCalls).toEqual(
      ["assess", "plan", "execute", "execute"].map((phase) => ({
        phase,
        promptTokens: 10,
        completionTokens: 5,
        totalTokens: 15,
      })),
    );
    expect(ticks[0].usage).toEqual({
      calls: 4,
      promptTokens: 40,
      completionTokens: 20,
      totalTokens: 60,
    });
    expect((await readState("t1")).usage).toEqual({
      calls: 9,
      promptTokens: 90,
      completionTokens: 45,
      totalTokens: 135,
    });
    // The third tick ends at the assessment: no plan, no execute call.
    expect(h.server.chatRequests().map(classify)).toEqual([
      "assess",
      "plan",
      "execute",
      "execute",
      "assess",
      "plan",
      "execute",
      "execute",
      "assess",
    ]);
  });

  it("stops at --max-ticks and resumes by id with the same goal and createdAt", async () => {
    const first = await runCli(args("--goal", GOAL, "--max-ticks", "2", "--id", "resume-me"), {
      env: env(),
    });
    expect(first.code).toBe(0);
    const before = await readState("resume-me");
    expect(before).toMatchObject({
      tick: 2,
      status: "completed",
      reason: "max-ticks",
      completed: false,
    });
    expect(first.stdout).toContain("after 2 ticks");

    const second = await runCli(args("--id", "resume-me", "--continue", "--max-ticks", "4"), {
      env: env(),
    });
    expect(second.code).toBe(0);
    expect(second.stderr).toContain("resumed at tick 2");
    const after = await readState("resume-me");
    expect(after).toMatchObject({
      tick: 4,
      goal: GOAL,
      createdAt: before.createdAt,
      status: "completed",
    });
    const ticks = (await readJournal("resume-me"))
      .filter((e) => e.type === "tick")
      .map((t) => t.tick);
    expect(ticks).toEqual([1, 2, 3, 4]);

    // Same goal again is fine; a different goal is refused with exit 2 and the file is untouched.
    const same = await runCli(args("--id", "resume-me", "--goal", GOAL), { env: env() });
    expect(same.code).toBe(0);
    const bytes = await fs.readFile(h.stateFile("resume-me"));
    const other = await runCli(args("--id", "resume-me", "--goal", "Something else"), {
      env: env(),
    });
    expect(other.code).toBe(2);
    expect(other.stderr).toContain("different goal");
    expect(other.stderr).toContain("--id");
    expect(await fs.readFile(h.stateFile("resume-me"))).toEqual(bytes);
  });

  it("exits 0 within a second of SIGTERM during a 60-second sleep, with status shutdown", async () => {
    const cli = startCli(args("--goal", GOAL, "--id", "sleepy", "--tick-interval", "60"), {
      env: env(),
    });
    await cli.waitForOutput("next tick at");
    await new Promise((r) => setTimeout(r, 100));
    const sent = Date.now();
    cli.child.kill("SIGTERM");
    const result = await cli.exited;
    const elapsed = Date.now() - sent;
    expect(result.code).toBe(0);
    expect(elapsed).toBeLessThan(1000);
    const state = await readState("sleepy");
    expect(state).toMatchObject({ status: "shutdown", reason: "signal", tick: 1 });
    expect(Date.parse(state.nextTickAt)).toBeGreaterThan(Date.now());
  });

  it("treats SIGINT (Ctrl-C) like SIGTERM: state saved as shutdown, exit 0", async () => {
    const cli = startCli(args("--goal", GOAL, "--id", "ctrl-c", "--tick-interval", "60"), {
      env: env(),
    });
    await cli.waitForOutput("next tick at");
    cli.child.kill("SIGINT");
    const result = await cli.exited;
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("shut down at tick 1");
    expect(await readState("ctrl-c")).toMatchObject({
      status: "shutdown",
      reason: "signal",
      tick: 1,
    });
  });

  it("exits 0 within a second of SIGTERM while a model request is in flight, and the tick is not counted", async () => {
    h.server.setHandler(
      scripted({ assess: (n) => (n === 2 ? { kind: "hang" } : assessment(false)) }),
    );
    const cli = startCli(args("--goal", GOAL, "--id", "inflight"), { env: env() });
    await cli.waitForOutput("[tick 2] assessing");
    await new Promise((r) => setTimeout(r, 200));
    const sent = Date.now();
    cli.child.kill("SIGTERM");
    const result = await cli.exited;
    expect(result.code).toBe(0);
    expect(Date.now() - sent).toBeLessThan(1000);
    const state = await readState("inflight");
    expect(state).toMatchObject({ status: "shutdown", reason: "signal", tick: 1 });
    const journal = await readJournal("inflight");
    expect(journal.filter((e) => e.type === "tick").map((t) => [t.tick, t.status])).toEqual([
      [1, "ok"],
      [2, "interrupted"],
    ]);
  });

  it("after SIGKILL while sleeping, run --id restores the snapshot and wakes at the saved nextTickAt", async () => {
    const cli = startCli(args("--goal", GOAL, "--id", "killed", "--tick-interval", "2"), {
      env: env(),
    });
    await cli.waitForOutput("next tick at");
    await new Promise((r) => setTimeout(r, 100));
    const saved = await readState("killed");
    expect(saved).toMatchObject({ status: "sleeping", tick: 1 });
    expect(saved.snapshot.value).toBe("persisting");
    cli.child.kill("SIGKILL");
    expect((await cli.exited).signal).toBe("SIGKILL");

    const resumed = await runCli(
      args("--id", "killed", "--max-ticks", "2", "--tick-interval", "2"),
      { env: env() },
    );
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toContain("resumed at tick 1");
    const state = await readState("killed");
    expect(state).toMatchObject({ tick: 2, status: "completed", reason: "max-ticks" });
    const ticks = (await readJournal("killed")).filter((e) => e.type === "tick");
    // The re-run persist did not journal tick 1 twice, and tick 2 did not start before nextTickAt.
    expect(ticks.map((t) => t.tick)).toEqual([1, 2]);
    expect(Date.parse(ticks[1].startedAt)).toBeGreaterThanOrEqual(Date.parse(saved.nextTickAt));
  });

  it("refuses a second run on a live heartbeat's id (exit 3, naming the holder) and takes the lock over after SIGKILL", async () => {
    const first = startCli(args("--goal", GOAL, "--id", "locked", "--tick-interval", "60"), {
      env: env(),
    });
    await first.waitForOutput("next tick at");
    const second = await runCli(args("--id", "locked"), { env: env() });
    expect(second.code).toBe(3);
    expect(second.stderr).toContain(`held by pid ${first.child.pid}`);
    expect(second.stderr).toContain("heartbeat-locked.lock");
    first.child.kill("SIGKILL");
    await first.exited;
    const third = await runCli(args("--id", "locked", "--max-ticks", "2"), { env: env() });
    expect(third.code).toBe(0);
    expect(await readState("locked")).toMatchObject({ tick: 2, status: "completed" });
    // A clean exit releases the lock.
    await expect(
      fs.access(path.join(h.workdir, ".ravenclaws", "heartbeat-locked.lock")),
    ).rejects.toThrow();
  });

  it("with --no-tools the plan is the tick's result and no tools are offered", async () => {
    h.server.setHandler(
      scripted({ plan: () => jsonMessage({ steps: ["Read the TODOs", "Update NOTES.md"] }) }),
    );
    const result = await runCli(
      args("--goal", GOAL, "--id", "notools", "--no-tools", "--max-ticks", "2"),
      { env: env() },
    );
    expect(result.code).toBe(0);
    const state = await readState("notools");
    expect(state.lastResult).toBe("1. Read the TODOs\n2. Update NOTES.md");
    expect(h.server.chatRequests().map(classify)).toEqual(["assess", "plan", "assess", "plan"]);
    expect(h.server.chatRequests().every((r) => r.body.tools === undefined)).toBe(true);
  });

  it("does not complete when the model's text merely says it is not GOAL_COMPLETE yet", async () => {
    h.server.setHandler(
      scripted({
        assess: () =>
          assessment(false, {
            assessment: "This is not GOAL_COMPLETE yet. [DONE] later.",
            progressSummary: "GOAL_COMPLETE soon",
          }),
        execute: () => message("not GOAL_COMPLETE yet"),
      }),
    );
    const result = await runCli(args("--goal", GOAL, "--id", "notyet", "--max-ticks", "2"), {
      env: env(),
    });
    expect(result.code).toBe(0);
    expect(await readState("notyet")).toMatchObject({
      completed: false,
      tick: 2,
      reason: "max-ticks",
    });
  });

  it("works with a server that rejects response_format, reading JSON from plain replies", async () => {
    const script = scripted({
      assess: (n) =>
        message(
          `Here you go:\n\`\`\`json\n${JSON.stringify({ goalComplete: n === 2, actionNeeded: true, assessment: "ok", progressSummary: `p${n}` })}\n\`\`\``,
        ),
      plan: () => message('Sure! {"steps": ["write notes"]}'),
    });
    h.server.setHandler((req, index) =>
      req.body.response_format
        ? errorReply(400, { message: "response_format is not supported by this server" })
        : script(req, index),
    );
    const result = await runCli(args("--goal", GOAL, "--id", "textmode", "--max-ticks", "5"), {
      env: env(),
    });
    expect(result.code).toBe(0);
    expect(await readState("textmode")).toMatchObject({ completed: true, tick: 2, progress: "p2" });
    // One rejected structured request, then text mode for good.
    const structured = h.server.chatRequests().filter((r) => r.body.response_format);
    expect(structured).toHaveLength(1);
  });

  it("survives a model that never returns valid JSON: no crash, no completion, a clean end", async () => {
    h.server.setHandler(
      scripted({ assess: () => message("I think the goal is GOAL_COMPLETE! Sure thing.") }),
    );
    const result = await runCli(args("--goal", GOAL, "--id", "nojson", "--max-ticks", "3"), {
      env: env(),
    });
    // The last tick failed: the run does not pass for a success.
    expect(result.code).toBe(1);
    const state = await readState("nojson");
    expect(state).toMatchObject({
      completed: false,
      tick: 3,
      status: "failed",
      reason: "last-tick-failed",
    });
    // The 3 answered (unusable) calls are charged: 15 tokens each from the fake server.
    expect(state.usage).toMatchObject({ calls: 3, totalTokens: 45 });
    expect(state.progress).toContain("assess failed");
    const ticks = (await readJournal("nojson")).filter((e) => e.type === "tick");
    expect(ticks.map((t) => t.status)).toEqual(["failed", "failed", "failed"]);
    expect(ticks[0].errors[0].code).toBe("llm-bad-output");

    // And with the failure limit below the tick limit, it ends in failed with exit 1.
    const limited = await runCli(
      args(
        "--goal",
        GOAL,
        "--id",
        "nojson2",
        "--max-ticks",
        "10",
        "--max-consecutive-failures",
        "2",
      ),
      { env: env() },
    );
    expect(limited.code).toBe(1);
    expect(await readState("nojson2")).toMatchObject({
      status: "failed",
      reason: "too-many-failures",
      tick: 2,
    });
  });

  it("ends in failed with exit 1 on a 401, with a message about the API key", async () => {
    h.server.setHandler(() =>
      errorReply(401, { message: "Incorrect API key provided", code: "invalid_api_key" }),
    );
    const result = await runCli(args("--goal", GOAL, "--id", "noauth"), { env: env() });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/API key/);
    expect(await readState("noauth")).toMatchObject({
      status: "failed",
      reason: "llm-auth",
      tick: 1,
    });
  });

  it("ends in failed with exit 1 when the base URL is unreachable", async () => {
    const closed = await startFakeOpenAI();
    const url = closed.baseURL;
    await closed.close();
    const result = await runCli([...args("--goal", GOAL, "--id", "unreach"), "--base-url", url], {
      env: env(),
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("Cannot reach the model server");
    expect(await readState("unreach")).toMatchObject({
      status: "failed",
      reason: "llm-unreachable",
    });
  });

  it("accepts the Rust original's flags and environment variables", async () => {
    const legacy = await runCli(
      [
        "--heartbeat",
        "--heartbeat-goal",
        GOAL,
        "--heartbeat-tick-interval",
        "0",
        "--heartbeat-max-ticks",
        "2",
        "--heartbeat-session",
        "legacy",
        "--workdir",
        h.workdir,
        "--base-url",
        h.server.baseURL,
      ],
      { env: env() },
    );
    expect(legacy.code).toBe(0);
    expect(await readState("legacy")).toMatchObject({ id: "legacy", goal: GOAL, tick: 2 });

    const viaEnv = await runCli([], {
      env: cleanEnv({
        OPENAI_API_KEY: API_KEY,
        OPENAI_BASE_URL: h.server.baseURL,
        RAVENCLAWS_HEARTBEAT: "1",
        RAVENCLAWS_HEARTBEAT_GOAL: GOAL,
        RAVENCLAWS_HEARTBEAT_TICK_INTERVAL: "0",
        RAVENCLAWS_HEARTBEAT_MAX_TICKS: "1",
        RAVENCLAWS_HEARTBEAT_SESSION: "from-env",
        RAVENCLAWS_WORKDIR: h.workdir,
      }),
    });
    expect(viaEnv.code).toBe(0);
    expect(await readState("from-env")).toMatchObject({ id: "from-env", tick: 1 });

    const short = await runCli(
      [
        "run",
        "--goal",
        GOAL,
        "--tick-interval",
        "0",
        "--max-ticks",
        "1",
        "--id",
        "short",
        "--workdir",
        h.workdir,
        "--base-url",
        h.server.baseURL,
      ],
      { env: env() },
    );
    expect(short.code).toBe(0);
    expect(await readState("short")).toMatchObject({ tick: 1 });
  });

  it("never writes or prints the API key", async () => {
    h.server.setHandler(
      scripted({
        assess: (n) =>
          n === 1
            ? errorReply(500, { message: `upstream echoed ${API_KEY}` })
            : assessment(n === 3),
        execute: (n) =>
          n === 1
            ? toolCalls([{ name: "write_file", arguments: { path: "a.txt", content: "x" } }])
            : message("done"),
      }),
    );
    const result = await runCli(
      args("--goal", GOAL, "--id", "secret", "--json", "--api-key", API_KEY),
      { env: env() },
    );
    expect(result.code).toBe(0);
    expect(result.stdout + result.stderr).not.toContain(API_KEY);
    const files = await readTree(h.stateDir);
    expect(files.length).toBeGreaterThanOrEqual(2);
    for (const { file, text } of files) expect(text, file).not.toContain(API_KEY);
    // The key did reach the server, as a bearer token.
    expect(h.server.chatRequests()[0]?.headers.authorization).toBe(`Bearer ${API_KEY}`);

    // A fatal error whose text echoes the key is redacted in the final message too.
    h.server.setHandler(() =>
      errorReply(401, { message: `Incorrect API key provided: ${API_KEY}` }),
    );
    const fatal = await runCli(args("--goal", GOAL, "--id", "secret2"), { env: env() });
    expect(fatal.code).toBe(1);
    expect(fatal.stderr).toContain("Incorrect API key provided: [redacted]");
    expect(fatal.stdout + fatal.stderr).not.toContain(API_KEY);
    for (const { file, text } of await readTree(h.stateDir)) {
      expect(text, file).not.toContain(API_KEY);
    }
  });

  it("prints machine-readable events with --json", async () => {
    const result = await runCli(
      args("--goal", GOAL, "--id", "json", "--max-ticks", "1", "--json"),
      { env: env() },
    );
    expect(result.code).toBe(0);
    const events = result.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events[0]).toMatchObject({ event: "start", id: "json", resumed: false });
    expect(events.filter((e) => e.event === "state").map((e) => e.state)).toEqual([
      "idle",
      // Written before the first model call.
      "persisting",
      // Every tick starts by looking whether anything changed (quiet ticks).
      "observing",
      "assessing",
      "planning",
      "executing",
      "persisting",
      "completed",
    ]);
    expect(events.find((e) => e.event === "tick")).toMatchObject({
      tick: 1,
      status: "ok",
      next: "completed",
    });
    expect(events.at(-1)).toMatchObject({
      event: "end",
      status: "completed",
      reason: "max-ticks",
      tick: 1,
    });
  });

  it("refuses a corrupt state file with exit 3 and leaves it byte for byte", async () => {
    const dir = h.stateDir;
    await fs.mkdir(dir);
    const file = path.join(dir, "heartbeat-broken.json");
    await fs.writeFile(file, '{"schemaVersion": 1, "id": "broken", "tick": ');
    const result = await runCli(args("--id", "broken"), { env: env() });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(file);
    expect(await fs.readFile(file, "utf8")).toBe('{"schemaVersion": 1, "id": "broken", "tick": ');
  });

  it("rejects bad usage with exit 2", async () => {
    const noGoal = await runCli(args("--id", "nobody"), { env: env() });
    expect(noGoal.code).toBe(2);
    expect(noGoal.stderr).toContain("--goal is required to start a heartbeat");
    const negative = await runCli(args("--goal", GOAL, "--tick-interval", "-5"), { env: env() });
    expect(negative.code).toBe(2);
    expect(negative.stderr).toContain("--tick-interval");
    const unknown = await runCli(args("--goal", GOAL, "--frobnicate"), { env: env() });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("frobnicate");
    const noKey = await runCli(["run", "--goal", GOAL, "--workdir", h.workdir], {
      env: cleanEnv(),
    });
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain("No API key for https://api.openai.com/v1");
    expect(noKey.stderr).toContain("OPENAI_API_KEY");
    const noArg = await runCli(args("--goal"), { env: env() });
    expect(noArg.code).toBe(2);
    expect(noArg.stderr).toContain("Not enough arguments following: goal");
    expect(noArg.stderr).not.toContain("internal error");
    const missingDir = await runCli(
      [...args("--goal", GOAL), "--workdir", path.join(h.workdir, "nope")],
      { env: env() },
    );
    expect(missingDir.code).toBe(2);
    expect(missingDir.stderr).toContain("does not exist");
  });
});
