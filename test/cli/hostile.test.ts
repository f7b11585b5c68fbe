/**
 * Never hang, never wedge (issue 11, point 9), end to end: the built CLI
 * against a hostile fake server (a body that stalls after the headers, a
 * 200 MB body, tool-call arguments that are not a string), a tool call that
 * kills the process on every run, and state files that are not files or that
 * contradict themselves.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { type CliResult, cleanEnv, runCli, startCli } from "../support/cli.js";
import {
  classify,
  DEFAULT_ASSESSMENT,
  jsonMessage,
  message,
  type RecordedRequest,
  scripted,
  toolCalls,
} from "../support/fakeOpenAI.js";
import { useCliHarness } from "../support/harness.js";

const GOAL = "Keep NOTES.md tidy";

const h = useCliHarness({ flags: ["--failure-backoff", "0"] });
const { runArgs: args, stateOf, journalOf } = h;
const env = (extra: Record<string, string> = {}) => cleanEnv({ OPENAI_API_KEY: "k", ...extra });
const ticksOf = async (id: string) => (await journalOf(id)).filter((e) => e.type === "tick");

/** The tool messages the model was sent, by call id. */
function toolReplies(requests: RecordedRequest[]): Map<string, string> {
  const replies = new Map<string, string>();
  for (const req of requests) {
    for (const m of req.body?.messages ?? []) {
      if (m.role === "tool") replies.set(m.tool_call_id, m.content);
    }
  }
  return replies;
}

/** Runs the CLI, killing it after 20 s: a process blocked on a FIFO must not outlive its test. */
async function runBounded(argv: string[]): Promise<CliResult> {
  const cli = startCli(argv, { env: env() });
  const guard = setTimeout(() => cli.child.kill("SIGKILL"), 20_000);
  const result = await cli.exited;
  clearTimeout(guard);
  expect(result.signal, `${argv[0]} hung and was killed`).toBeNull();
  return result;
}

/** Peak resident memory (VmHWM, bytes) of a running process, polled until it exits. */
function trackPeakRss(pid: number): { stop(): number } {
  let peak = 0;
  const read = () => {
    fs.readFile(`/proc/${pid}/status`, "utf8")
      .then((text) => {
        const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(text)?.[1] ?? 0);
        peak = Math.max(peak, kb * 1024);
      })
      .catch(() => {});
  };
  const timer = setInterval(read, 20);
  read();
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

describe("a hostile model server", () => {
  it("a body that stalls after the headers: with --request-timeout 2 the tick fails within seconds and the heartbeat goes on", async () => {
    h.server.setHandler(
      scripted({ assess: (n) => (n === 1 ? { kind: "stall" } : jsonMessage(DEFAULT_ASSESSMENT)) }),
    );
    const started = Date.now();
    const result = await runCli(
      args(
        "--id",
        "stall",
        "--goal",
        GOAL,
        "--max-ticks",
        "2",
        "--request-timeout",
        "2",
        "--max-retries",
        "0",
      ),
      { env: env() },
    );
    const elapsed = Date.now() - started;
    expect(result.code, result.stderr).toBe(0);
    const ticks = await ticksOf("stall");
    expect(ticks.map((t) => t.status)).toEqual(["failed", "ok"]);
    expect(ticks[0].errors[0]).toMatchObject({
      phase: "assess",
      code: "llm-timeout",
      fatal: false,
    });
    expect(ticks[0].errors[0].message).toContain("did not arrive in full within 2 s");
    // The stalled tick took the 2 s timeout, not the 300 s and more of an unbounded body.
    expect(ticks[0].durationMs).toBeGreaterThanOrEqual(1_900);
    expect(ticks[0].durationMs).toBeLessThan(10_000);
    expect(elapsed).toBeLessThan(30_000);
    console.log(
      `stalled body: tick failed after ${ticks[0].durationMs} ms; run took ${elapsed} ms`,
    );
  });

  it("a 200 MB body is cut off at 16 MB with memory bounded; the tick fails and the heartbeat goes on", async () => {
    h.server.setHandler(
      scripted({
        assess: (n) => (n === 1 ? { kind: "huge", bytes: 200e6 } : jsonMessage(DEFAULT_ASSESSMENT)),
      }),
    );
    const cli = startCli(
      args("--id", "huge", "--goal", GOAL, "--max-ticks", "2", "--max-retries", "0"),
      { env: env() },
    );
    const rss = trackPeakRss(cli.child.pid ?? 0);
    const result = await cli.exited;
    const peak = rss.stop();
    expect(result.code, result.stderr).toBe(0);
    const ticks = await ticksOf("huge");
    expect(ticks.map((t) => t.status)).toEqual(["failed", "ok"]);
    expect(ticks[0].errors[0]).toMatchObject({ code: "llm-too-large", fatal: false });
    expect(ticks[0].errors[0].message).toContain("exceeds 16 MB");
    // Read up to the cap (plus socket buffers), not the 200 MB sent.
    expect(h.server.bytesSent()).toBeLessThan(200e6);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(300 * 1024 * 1024);
    console.log(
      `200 MB body: peak RSS ${(peak / 1024 / 1024).toFixed(0)} MB; server wrote ${(h.server.bytesSent() / 1e6).toFixed(1)} MB before the cut`,
    );
  });

  it("tool calls whose arguments are a JSON object or a number are answered invalid; the tick goes on", async () => {
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                {
                  id: "obj",
                  name: "write_file",
                  arguments: "",
                  rawArguments: { path: "a.txt", content: "A" },
                },
                { id: "num", name: "list_dir", arguments: "", rawArguments: 7 },
              ])
            : message("Could not write."),
      }),
    );
    const result = await runCli(args("--id", "objargs", "--goal", GOAL, "--max-ticks", "1"), {
      env: env(),
    });
    expect(result.code, result.stderr).toBe(0);
    const [tick] = await ticksOf("objargs");
    expect(tick.status).toBe("ok");
    expect(tick.errors).toEqual([]);
    expect(tick.toolCalls.map((c: { status: string }) => c.status)).toEqual(["invalid", "invalid"]);
    const replies = toolReplies(h.server.chatRequests());
    expect(replies.get("obj")).toContain("sent as an object, not as a string of JSON text");
    expect(replies.get("num")).toContain("sent as a number");
    // Not run: the file was not written.
    await expect(fs.access(path.join(h.workdir, "a.txt"))).rejects.toThrow();
  });
});

describe("a tool call that kills the process", () => {
  it("is re-run at most twice; then it is answered crashed-process and the heartbeat goes on", async () => {
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                { id: "k", name: "shell_exec", arguments: { command: "echo run >> runs.txt" } },
              ])
            : message("The command keeps crashing; moving on."),
      }),
    );
    // The process SIGKILLs itself as the tool call finishes, before its result is
    // journaled, on every run: exactly what `kill -9 $PPID` does, and independent of
    // whether a sandbox lets the command see its runner.
    const killing = env({ RAVENCLAWS_CRASH_AT: "tool:before-result" });
    const runs: CliResult[] = [
      await runCli(args("--id", "wedge", "--goal", GOAL, "--max-ticks", "1"), { env: killing }),
    ];
    for (let i = 0; i < 3; i++) {
      runs.push(await runCli(args("--id", "wedge", "--max-ticks", "1"), { env: killing }));
    }
    // The first run and two re-runs die; the third resume does not run it again.
    expect(runs.map((r) => r.signal)).toEqual(["SIGKILL", "SIGKILL", "SIGKILL", null]);
    const last = runs[3] as CliResult;
    expect(last.code, last.stderr).toBe(0);
    expect(
      (await fs.readFile(path.join(h.workdir, "runs.txt"), "utf8")).trim().split("\n"),
    ).toHaveLength(3);

    const journal = await journalOf("wedge");
    expect(journal.filter((e) => e.type === "tool-rerun").map((e) => e.rerun)).toEqual([1, 2]);
    const results = journal.filter((e) => e.type === "tool");
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ callId: "k", status: "error", code: "crashed-process" });
    // The model is told, and the tick finishes.
    const reply = toolReplies(h.server.chatRequests()).get("k") ?? "";
    expect(reply).toContain("crashed-process");
    expect(reply).toContain("started 3 times");
    const [tick] = await ticksOf("wedge");
    expect(tick).toMatchObject({ tick: 1, status: "ok" });
    expect(tick.toolCalls).toEqual([{ callId: "k", name: "shell_exec", status: "error" }]);
    expect(await stateOf("wedge")).toMatchObject({ status: "completed", tick: 1 });
    // Only the first run asked the model for the call: resumes replay the checkpoint.
    expect(h.server.chatRequests().map(classify)).toEqual(["assess", "plan", "execute", "execute"]);
  });

  it("a journaled `kill -9 $PPID` (shell_exec without a sandbox) does not wedge the heartbeat across resumes", async () => {
    h.server.setHandler(
      scripted({
        execute: (n) =>
          n === 1
            ? toolCalls([
                {
                  id: "ppid",
                  name: "shell_exec",
                  arguments: { command: "echo run >> runs.txt; kill -9 $PPID" },
                },
              ])
            : message("That command kills me; moving on."),
      }),
    );
    // --sandbox off: in bubblewrap's PID namespace $PPID is not the runner.
    const flags = ["--sandbox", "off", "--max-ticks", "1"];
    const runs: CliResult[] = [
      await runCli(args("--id", "ppid", "--goal", GOAL, ...flags), { env: env() }),
    ];
    for (let i = 0; i < 3; i++)
      runs.push(await runCli(args("--id", "ppid", ...flags), { env: env() }));
    expect(runs.map((r) => r.signal)).toEqual(["SIGKILL", "SIGKILL", "SIGKILL", null]);
    expect((runs[3] as CliResult).code, (runs[3] as CliResult).stderr).toBe(0);
    expect(
      (await fs.readFile(path.join(h.workdir, "runs.txt"), "utf8")).trim().split("\n"),
    ).toHaveLength(3);
    const results = (await journalOf("ppid")).filter((e) => e.type === "tool");
    expect(results).toEqual([
      expect.objectContaining({ callId: "ppid", status: "error", code: "crashed-process" }),
    ]);
    expect(await stateOf("ppid")).toMatchObject({ status: "completed", tick: 1 });
  });
});

describe("state files that are not what they claim", () => {
  it("a FIFO in place of the state file: run, status and show exit 3 at once, without reading it", async () => {
    await fs.mkdir(h.stateDir, { recursive: true });
    const fifo = h.stateFile("fifo");
    execFileSync("mkfifo", [fifo]);
    const where = ["--workdir", h.workdir];
    for (const argv of [
      args("--id", "fifo"),
      ["status", ...where],
      ["status", "--json", ...where],
      ["show", "fifo", ...where],
    ]) {
      const started = Date.now();
      const result = await runBounded(argv);
      const elapsed = Date.now() - started;
      expect(result.code, `${argv[0]}: ${result.stdout}${result.stderr}`).toBe(3);
      expect(`${result.stdout}${result.stderr}`).toMatch(/FIFO/);
      // A blocking read of a FIFO nobody writes never returns: getting here is the proof.
      // The time is the CLI's startup (compare `status` in an empty directory).
      console.log(`FIFO state file: ${argv.slice(0, 2).join(" ")} exit 3 after ${elapsed} ms`);
    }
    expect((await fs.lstat(fifo)).isFIFO()).toBe(true);
    expect(h.server.chatRequests()).toHaveLength(0);
  });

  it("a FIFO in place of the journal: run and logs exit 3 without blocking", async () => {
    const ok = await runCli(args("--id", "jfifo", "--goal", GOAL, "--max-ticks", "1"), {
      env: env(),
    });
    expect(ok.code, ok.stderr).toBe(0);
    await fs.rm(h.journalFile("jfifo"));
    execFileSync("mkfifo", [h.journalFile("jfifo")]);
    const requests = h.server.chatRequests().length;
    for (const argv of [
      args("--id", "jfifo", "--max-ticks", "2"),
      ["logs", "jfifo", "--workdir", h.workdir],
    ]) {
      const result = await runBounded(argv);
      expect(result.code, `${argv[0]}: ${result.stderr}`).toBe(3);
      expect(result.stderr).toMatch(/journal .* is a FIFO/);
    }
    expect(h.server.chatRequests()).toHaveLength(requests);
  });

  it("a FIFO in place of the lock: run, status and show exit 3 without blocking", async () => {
    const ok = await runCli(args("--id", "lfifo", "--goal", GOAL, "--max-ticks", "1"), {
      env: env(),
    });
    expect(ok.code, ok.stderr).toBe(0);
    execFileSync("mkfifo", [path.join(h.stateDir, "heartbeat-lfifo.lock")]);
    const requests = h.server.chatRequests().length;
    for (const argv of [
      args("--id", "lfifo", "--max-ticks", "2"),
      ["status", "--workdir", h.workdir],
      ["show", "lfifo", "--workdir", h.workdir],
    ]) {
      const result = await runBounded(argv);
      expect(result.code, `${argv[0]}: ${result.stdout}${result.stderr}`).toBe(3);
      expect(result.stderr).toMatch(/lock .* is a FIFO/);
    }
    expect(h.server.chatRequests()).toHaveLength(requests);
  });

  it("a FIFO in place of ravenclaws.toml: run and status exit 2 naming it, without blocking", async () => {
    const toml = path.join(h.workdir, "ravenclaws.toml");
    execFileSync("mkfifo", [toml]);
    const requests = h.server.chatRequests().length;
    try {
      for (const argv of [
        args("--id", "tfifo", "--goal", GOAL, "--max-ticks", "1"),
        ["status", "--workdir", h.workdir],
        ["status", "--config", toml],
      ]) {
        const result = await runBounded(argv);
        expect(result.code, `${argv[0]}: ${result.stdout}${result.stderr}`).toBe(2);
        expect(result.stderr).toContain(`${toml} is a FIFO (named pipe), not a regular file`);
      }
      expect(h.server.chatRequests()).toHaveLength(requests);
    } finally {
      await fs.rm(toml);
    }
  });

  // biome-ignore lint/suspicious/noExplicitAny: the state file as parsed JSON, edited by hand.
  const contradictions: Array<[string, (file: any) => void, RegExp]> = [
    [
      "a top-level tick other than the snapshot's",
      (f) => {
        f.tick = 7;
      },
      /its tick is 7 but its snapshot's is 1/,
    ],
    [
      "a snapshot state that does not exist",
      (f) => {
        f.snapshot.value = "daydreaming";
      },
      /"daydreaming", which does not exist/,
    ],
    [
      "a snapshot whose status is error",
      (f) => {
        f.snapshot.status = "error";
      },
      /status is "error"/,
    ],
  ];
  for (const [what, corrupt, message] of contradictions) {
    it(`${what}: run exits 3 and leaves the file byte for byte`, async () => {
      const ok = await runCli(args("--id", "self", "--goal", GOAL, "--max-ticks", "1"), {
        env: env(),
      });
      expect(ok.code, ok.stderr).toBe(0);
      const file = await stateOf("self");
      corrupt(file);
      const text = `${JSON.stringify(file, null, 2)}\n`;
      await fs.writeFile(h.stateFile("self"), text);
      const requests = h.server.chatRequests().length;
      const result = await runCli(args("--id", "self", "--max-ticks", "3"), { env: env() });
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toMatch(/contradicts itself/);
      expect(result.stderr).toMatch(message);
      expect(await fs.readFile(h.stateFile("self"), "utf8")).toBe(text);
      expect(h.server.chatRequests()).toHaveLength(requests);
    });
  }

  it("a state file copied under another id: run, status and show exit 3", async () => {
    const ok = await runCli(args("--id", "orig", "--goal", GOAL, "--max-ticks", "1"), {
      env: env(),
    });
    expect(ok.code, ok.stderr).toBe(0);
    await fs.copyFile(h.stateFile("orig"), h.stateFile("copy"));
    const before = await fs.readFile(h.stateFile("copy"), "utf8");
    for (const argv of [
      args("--id", "copy", "--max-ticks", "3"),
      ["status", "--workdir", h.workdir],
      ["show", "copy", "--workdir", h.workdir],
    ]) {
      const result = await runCli(argv, { env: env() });
      expect(result.code, `${argv[0]}: ${result.stdout}${result.stderr}`).toBe(3);
      expect(result.stderr).toMatch(/its id is "orig" but its file name says "copy"/);
    }
    expect(await fs.readFile(h.stateFile("copy"), "utf8")).toBe(before);
  });
});
