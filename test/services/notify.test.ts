/**
 * The notifier against a real HTTP server on 127.0.0.1 (port 0) and real
 * commands: payloads, bearer token, retries, timeouts, coalescing (with an
 * injected clock, not minute-long waits), close at exit, redaction, and the
 * events a heartbeat's persists produce.
 */
import * as fs from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StateFile } from "../../src/schemas/stateFile.js";
import { resolveRunSettings } from "../../src/services/config.js";
import {
  approvalNeededEvent,
  attentionEvent,
  completedEvent,
  type EventBase,
  failedEvent,
  type NotifyClock,
  type NotifyEvent,
  type NotifyJournalEntry,
  notifierFromSettings,
  notifyingEvents,
  notifyTokenOf,
} from "../../src/services/notify/index.js";
import { createRedactor } from "../../src/services/redact.js";
import type { RunSettings } from "../../src/settings.js";
import { tempDir } from "../support/cli.js";

const API_KEY = "sk-notify-test-0123456789";
const TOKEN = "tok-notify-secret-abcdef";
const redact = createRedactor([API_KEY, TOKEN]);

interface Hit {
  headers: IncomingMessage["headers"];
  // biome-ignore lint/suspicious/noExplicitAny: tests dig into the JSON payloads.
  body: any;
  raw: string;
}

/** A webhook receiver: answers with the next status of `statuses` (then 200); `hang` never answers. */
class Hook {
  hits: Hit[] = [];
  statuses: number[] = [];
  hang = false;
  private server: Server | undefined;
  private waiters: Array<() => void> = [];
  url = "";

  async start() {
    const server = createServer((req, res) => {
      let raw = "";
      req.on("data", (c: Buffer) => {
        raw += c.toString();
      });
      req.on("end", () => {
        this.hits.push({ headers: req.headers, body: JSON.parse(raw), raw });
        for (const w of this.waiters) w();
        if (this.hang) return;
        res.writeHead(this.statuses.shift() ?? 200).end("ok");
      });
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  }

  /** Resolves once `n` requests arrived. */
  waitFor(n: number) {
    return new Promise<void>((resolve) => {
      const check = () => {
        if (this.hits.length >= n) resolve();
      };
      this.waiters.push(check);
      check();
    });
  }

  async close() {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

/** A clock the test moves by hand; timers fire when it passes them. */
function manualClock(start = Date.parse("2026-12-01T00:00:00Z")) {
  let t = start;
  let timers: Array<{ at: number; run: () => void; id: number }> = [];
  let next = 0;
  const clock: NotifyClock & { advance(ms: number): void } = {
    now: () => t,
    setTimeout: (run, ms) => {
      const id = next++;
      timers.push({ at: t + ms, run, id });
      return id;
    },
    clearTimeout: (id) => {
      timers = timers.filter((x) => x.id !== id);
    },
    advance(ms) {
      t += ms;
      const due = timers.filter((x) => x.at <= t);
      timers = timers.filter((x) => x.at > t);
      for (const x of due) x.run();
    },
  };
  return clock;
}

const base = (over: Partial<EventBase> = {}): EventBase => ({
  heartbeatId: "hb1",
  goal: "Keep NOTES.md current",
  tick: 3,
  status: "sleeping",
  reason: null,
  time: "2026-12-01T00:00:00.000Z",
  ...over,
});

const settings = (over: Partial<RunSettings> = {}) =>
  ({
    notifyOn: ["approval-needed", "failed", "completed", "budget", "attention"],
    ...over,
  }) as Pick<RunSettings, "notifyUrl" | "notifyCommand" | "notifyTokenEnv" | "notifyOn">;

let hook: Hook;
let journal: NotifyJournalEntry[];
let warnings: string[];
let dir: string;

beforeEach(async () => {
  hook = new Hook();
  await hook.start();
  journal = [];
  warnings = [];
  dir = await tempDir();
});
afterEach(async () => {
  await hook.close();
  await fs.rm(dir, { recursive: true, force: true });
});

const deps = (over: Record<string, unknown> = {}) => ({
  env: { PATH: process.env.PATH, OPENAI_API_KEY: API_KEY, HOOK_TOKEN: TOKEN, KEEP_ME: "yes" },
  cwd: dir,
  redact,
  apiKey: API_KEY,
  token: TOKEN,
  journal: (entry: NotifyJournalEntry) => {
    journal.push(entry);
  },
  warn: (text: string) => warnings.push(text),
  retryDelaysMs: [5, 10, 20],
  ...over,
});

describe("webhook", () => {
  it("POSTs one JSON event with the bearer token from the named variable; no secret in the payload", async () => {
    const s = settings({ notifyUrl: hook.url, notifyTokenEnv: "HOOK_TOKEN" });
    const token = notifyTokenOf(s, { HOOK_TOKEN: TOKEN });
    expect(token).toBe(TOKEN);
    const notifier = notifierFromSettings(s, deps({ token }));
    expect(notifier).not.toBeNull();
    notifier?.emit(attentionEvent(base(), `The key ${API_KEY} and ${TOKEN} leaked into a file`));
    await notifier?.close();

    expect(hook.hits).toHaveLength(1);
    const hit = hook.hits[0] as Hit;
    expect(hit.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(hit.headers["content-type"]).toBe("application/json");
    expect(hit.body).toMatchObject({
      event: "attention",
      heartbeatId: "hb1",
      goal: "Keep NOTES.md current",
      tick: 3,
      status: "sleeping",
      reason: null,
      time: "2026-12-01T00:00:00.000Z",
    });
    expect(hit.body.text).toMatch(/^ravenclaws: heartbeat hb1 needs attention: /);
    expect(hit.raw).not.toContain(API_KEY);
    expect(hit.raw).not.toContain(TOKEN);
    expect(hit.raw).toContain("[redacted]");
    expect(journal).toEqual([
      expect.objectContaining({
        type: "notify",
        event: "attention",
        attempts: 1,
        transport: "url",
      }),
    ]);
    // The journal names the origin only: a webhook URL's path is often its secret.
    expect(journal[0]?.target).toBe(new URL(hook.url).origin);
  });

  it("a token variable that is unset is a usage error naming it", () => {
    expect(() =>
      notifyTokenOf({ notifyUrl: hook.url, notifyTokenEnv: "NO_SUCH_TOKEN_VAR" }, {}),
    ).toThrow(/NO_SUCH_TOKEN_VAR, which is not set/);
  });

  it("retries a 5xx with backoff and journals the attempts it took", async () => {
    hook.statuses = [500, 503];
    const notifier = notifierFromSettings(
      settings({ notifyUrl: hook.url }),
      deps({ token: undefined }),
    );
    notifier?.emit(completedEvent(base({ status: "completed", reason: "goal-met" })));
    await notifier?.close();
    expect(hook.hits).toHaveLength(3);
    expect(hook.hits[0]?.headers.authorization).toBeUndefined();
    expect(journal).toEqual([expect.objectContaining({ type: "notify", attempts: 3 })]);
  });

  it("gives up after 3 retries: journaled as notify-failed and warned, the error redacted", async () => {
    hook.statuses = [500, 500, 500, 500, 500];
    const notifier = notifierFromSettings(settings({ notifyUrl: hook.url }), deps());
    notifier?.emit(failedEvent(base({ status: "failed" }), { code: "x", message: API_KEY }));
    await notifier?.close();
    expect(hook.hits).toHaveLength(4);
    expect(journal).toEqual([
      expect.objectContaining({
        type: "notify-failed",
        event: "failed",
        attempts: 4,
        error: "HTTP 500",
      }),
    ]);
    expect(warnings.join("\n")).toMatch(
      /failed notification .*failed after 4 attempts|the failed notification/,
    );
    expect(JSON.stringify({ journal, warnings, hits: hook.hits.map((h) => h.raw) })).not.toContain(
      API_KEY,
    );
  });

  it("does not retry a 4xx other than 408 and 429", async () => {
    hook.statuses = [404];
    const notifier = notifierFromSettings(settings({ notifyUrl: hook.url }), deps());
    notifier?.emit(completedEvent(base()));
    await notifier?.close();
    expect(hook.hits).toHaveLength(1);
    expect(journal).toEqual([
      expect.objectContaining({ type: "notify-failed", attempts: 1, error: "HTTP 404" }),
    ]);
  });

  it("an attempt that gets no answer ends at the timeout and is retried", async () => {
    hook.hang = true;
    const notifier = notifierFromSettings(
      settings({ notifyUrl: hook.url }),
      deps({ timeoutMs: 150, retryDelaysMs: [5] }),
    );
    notifier?.emit(completedEvent(base()));
    await notifier?.close();
    expect(hook.hits.length).toBeGreaterThanOrEqual(1);
    expect(journal).toEqual([
      expect.objectContaining({
        type: "notify-failed",
        attempts: 2,
        error: "no answer within 150 ms",
      }),
    ]);
  });

  it("close waits a bounded time, then cancels what is still in flight (journaled)", async () => {
    hook.hang = true;
    const notifier = notifierFromSettings(
      settings({ notifyUrl: hook.url }),
      deps({ timeoutMs: 60_000, closeTimeoutMs: 200 }),
    );
    notifier?.emit(completedEvent(base()));
    await hook.waitFor(1);
    await notifier?.close();
    expect(journal).toEqual([
      expect.objectContaining({ type: "notify-failed", attempts: 1, error: "cancelled at exit" }),
    ]);
  });

  it("emit never throws or waits, even when the receiver is gone", async () => {
    await hook.close();
    const notifier = notifierFromSettings(settings({ notifyUrl: hook.url }), deps());
    expect(notifier?.emit(completedEvent(base()))).toBeUndefined();
    await notifier?.close();
    expect(journal).toEqual([
      expect.objectContaining({
        type: "notify-failed",
        attempts: 4,
        error: expect.stringMatching(/cannot reach/),
      }),
    ]);
    await hook.start();
  });
});

describe("command", () => {
  it("gets the event on stdin, outside any sandbox, without the API key or the token in its environment", async () => {
    const out = path.join(dir, "event.json");
    const envOut = path.join(dir, "env.txt");
    const notifier = notifierFromSettings(
      settings({
        notifyCommand: `cat > '${out}'; env > '${envOut}'`,
        notifyTokenEnv: "HOOK_TOKEN",
      }),
      deps({
        env: {
          PATH: process.env.PATH,
          OPENAI_API_KEY: API_KEY,
          RAVENCLAWS_API_KEY: API_KEY,
          COPY_OF_KEY: `prefix-${API_KEY}`,
          HOOK_TOKEN: TOKEN,
          KEEP_ME: "yes",
        },
      }),
    );
    const pending = [
      {
        callId: "c1",
        tool: "write_file",
        arguments: '{"path":"a.md"}',
        rule: "write(**)",
        since: "2026-12-01T00:00:00Z",
      },
    ];
    notifier?.emit(approvalNeededEvent(base({ status: "executing" }), pending));
    await notifier?.close();
    const event = JSON.parse(await fs.readFile(out, "utf8")) as NotifyEvent;
    expect(event).toMatchObject({
      event: "approval-needed",
      pending,
      approveCommand: "ravenclaws approve hb1",
    });
    expect(event.text).toContain("ravenclaws approve hb1");
    const env = await fs.readFile(envOut, "utf8");
    expect(env).toContain("KEEP_ME=yes");
    expect(env).not.toContain(API_KEY);
    expect(env).not.toContain(TOKEN);
    expect(env).not.toMatch(/^(OPENAI_API_KEY|RAVENCLAWS_API_KEY|COPY_OF_KEY|HOOK_TOKEN)=/m);
    expect(journal).toEqual([
      expect.objectContaining({ type: "notify", transport: "command", target: "command" }),
    ]);
  });

  it("a failing command is retried, then journaled with its exit code and stderr", async () => {
    const counter = path.join(dir, "runs");
    const notifier = notifierFromSettings(
      settings({ notifyCommand: `echo x >> '${counter}'; echo "boom ${API_KEY}" >&2; exit 3` }),
      deps(),
    );
    notifier?.emit(completedEvent(base()));
    await notifier?.close();
    expect((await fs.readFile(counter, "utf8")).trim().split("\n")).toHaveLength(4);
    expect(journal).toEqual([
      expect.objectContaining({
        type: "notify-failed",
        transport: "command",
        attempts: 4,
        error: "the command exited with code 3: boom [redacted]",
      }),
    ]);
  });

  it("a command past its timeout is killed with its process group", async () => {
    const notifier = notifierFromSettings(
      settings({ notifyCommand: "sleep 30 & wait" }),
      deps({ timeoutMs: 150, retryDelaysMs: [] }),
    );
    notifier?.emit(completedEvent(base()));
    await notifier?.close();
    expect(journal).toEqual([
      expect.objectContaining({
        type: "notify-failed",
        attempts: 1,
        error: "the command ran past 150 ms",
      }),
    ]);
  });
});

describe("coalescing: one event per kind per heartbeat per minute", () => {
  it("holds later events of a kind within the minute and sends the latest, counted, when it ends", async () => {
    const clock = manualClock();
    const notifier = notifierFromSettings(settings({ notifyUrl: hook.url }), deps({ clock }));
    notifier?.emit(attentionEvent(base({ tick: 1 }), "first"));
    clock.advance(10_000);
    notifier?.emit(attentionEvent(base({ tick: 2 }), "second"));
    clock.advance(10_000);
    notifier?.emit(attentionEvent(base({ tick: 3 }), "third"));
    // Another kind, and the same kind of another heartbeat, are not held back.
    notifier?.emit(completedEvent(base({ tick: 3 })));
    notifier?.emit(attentionEvent(base({ heartbeatId: "hb2" }), "other heartbeat"));
    await hook.waitFor(3);
    expect(hook.hits.map((h) => h.body.attention ?? h.body.event)).toEqual([
      "first",
      "completed",
      "other heartbeat",
    ]);
    clock.advance(39_999);
    clock.advance(1);
    await hook.waitFor(4);
    expect(hook.hits[3]?.body).toMatchObject({ attention: "third", tick: 3, coalesced: 1 });
    // A minute after that delivery the next one goes at once.
    clock.advance(60_000);
    notifier?.emit(attentionEvent(base({ tick: 9 }), "later"));
    await hook.waitFor(5);
    await notifier?.close();
    expect(hook.hits.map((h) => h.body.attention ?? h.body.event)).toEqual([
      "first",
      "completed",
      "other heartbeat",
      "third",
      "later",
    ]);
    expect(hook.hits[4]?.body.coalesced).toBeUndefined();
  });

  it("close sends what the window holds at once (a completed event is not lost at exit)", async () => {
    const clock = manualClock();
    const notifier = notifierFromSettings(
      settings({ notifyUrl: hook.url, notifyOn: ["failed", "completed", "budget"] }),
      deps({ clock }),
    );
    notifier?.emit({ ...completedEvent(base()), event: "budget", text: "80%" });
    notifier?.emit({ ...completedEvent(base()), event: "budget", text: "100%" });
    notifier?.emit(attentionEvent(base(), "not in --notify-on: dropped"));
    await notifier?.close();
    expect(hook.hits.map((h) => h.body.text)).toEqual(["80%", "100%"]);
  });
});

describe("events of a running heartbeat", () => {
  const file = (over: Partial<StateFile> & { maxTokens?: number; totalTokens?: number } = {}) =>
    ({
      id: "hb1",
      goal: "Keep NOTES.md current",
      status: "sleeping",
      tick: 1,
      reason: null,
      error: null,
      usage: { calls: 1, promptTokens: 0, completionTokens: 0, totalTokens: over.totalTokens ?? 0 },
      snapshot: { context: { settings: { maxTokens: over.maxTokens ?? 0 } } },
      ...over,
    }) as unknown as StateFile;
  const tick = (n: number, status: string, extra: Record<string, unknown> = {}) => ({
    type: "tick",
    seq: n,
    tick: n,
    status,
    assessment: "All fine.",
    result: null,
    ...extra,
  });

  it("ordinary ticks give only ok; attention, completed and failed are their own events", () => {
    const sent: NotifyEvent[] = [];
    const events = notifyingEvents({ emit: (e) => sent.push(e) }, () => 0);
    events.persisted(file({ tick: 0 }), []);
    events.persisted(file({ tick: 1 }), [tick(1, "idle")]);
    events.persisted(file({ tick: 2 }), [tick(2, "ok", { result: "Wrote it." })]);
    events.persisted(file({ tick: 3 }), [tick(3, "idle", { attention: "Disk almost full." })]);
    events.persisted(file({ tick: 4, status: "completed", reason: "goal-met" }), [
      tick(4, "ok"),
      { type: "end", status: "completed", reason: "goal-met", tick: 4 },
    ]);
    expect(sent.map((e) => [e.event, e.tick])).toEqual([
      ["ok", 1],
      ["ok", 2],
      ["attention", 3],
      ["completed", 4],
    ]);
    expect(sent[1]?.text).toBe("ravenclaws: heartbeat hb1 tick 2 ok: Wrote it.");
    expect(sent[2]?.attention).toBe("Disk almost full.");
    expect(sent[3]).toMatchObject({ status: "completed", reason: "goal-met" });

    const failed: NotifyEvent[] = [];
    notifyingEvents({ emit: (e) => failed.push(e) }).persisted(
      file({
        status: "failed",
        reason: "fatal",
        error: { code: "llm-auth", message: "bad key", fatal: true },
      }),
      [{ type: "end", status: "failed", reason: "fatal", tick: 1 }],
    );
    expect(failed).toEqual([
      expect.objectContaining({ event: "failed", error: { code: "llm-auth", message: "bad key" } }),
    ]);
  });

  it("approvalNeeded: the pending calls and the approve command, status executing", () => {
    const sent: NotifyEvent[] = [];
    const pending = [
      {
        callId: "c9",
        tool: "shell_exec",
        arguments: '{"command":"npm publish"}',
        rule: "shell(npm publish*)",
        since: "2026-12-01T00:00:00Z",
      },
    ];
    notifyingEvents({ emit: (e) => sent.push(e) }, () => 0).approvalNeeded(
      { id: "hb1", goal: "Ship it", tick: 2 },
      pending,
    );
    expect(sent).toEqual([
      expect.objectContaining({
        event: "approval-needed",
        heartbeatId: "hb1",
        status: "executing",
        reason: "awaiting-approval",
        tick: 2,
        pending,
        approveCommand: "ravenclaws approve hb1",
        text: 'ravenclaws: heartbeat hb1 waits for approval of shell_exec({"command":"npm publish"}): run `ravenclaws approve hb1` (or `ravenclaws deny hb1`)',
      }),
    ]);
  });

  it("budget: 80% and 100% of --max-tokens once each; a resumed heartbeat does not repeat a crossed one", () => {
    const sent: NotifyEvent[] = [];
    const events = notifyingEvents({ emit: (e) => sent.push(e) });
    events.persisted(file({ maxTokens: 1000, totalTokens: 0 }), []);
    events.persisted(file({ maxTokens: 1000, totalTokens: 500 }), [tick(1, "ok")]);
    events.persisted(file({ maxTokens: 1000, totalTokens: 810 }), [tick(2, "ok")]);
    events.persisted(file({ maxTokens: 1000, totalTokens: 900 }), [tick(3, "ok")]);
    events.persisted(
      file({ maxTokens: 1000, totalTokens: 950, status: "failed", reason: "budget" }),
      [{ type: "end", status: "failed", reason: "budget", tick: 3 }],
    );
    const budget = sent.filter((e) => e.event === "budget");
    expect(budget.map((e) => e.budget)).toEqual([
      { limit: "max-tokens", threshold: 80, used: 810, max: 1000 },
      { limit: "max-tokens", threshold: 100, used: 950, max: 1000 },
    ]);
    expect(budget[0]?.text).toContain("has used 80% of its token budget (810 of 1,000 tokens)");

    // A daily cap reached (the heartbeat sleeps until the next day): a budget event naming it.
    const daily: NotifyEvent[] = [];
    notifyingEvents({ emit: (e) => daily.push(e) }).persisted(file({ reason: "daily-budget" }), [
      {
        type: "daily-budget",
        seq: 5,
        cap: "cost",
        usage: { totalTokens: 4000, costUsd: 0.52 },
        maxTokensPerDay: 0,
        maxCostPerDay: 0.5,
      },
    ]);
    expect(daily).toEqual([
      expect.objectContaining({
        event: "budget",
        reason: "daily-budget",
        budget: { limit: "max-cost-per-day", threshold: 100, used: 0.52, max: 0.5 },
        text: "ravenclaws: heartbeat hb1 reached its daily cap ($0.52 of $0.5 today): sleeping until the next day",
      }),
    ]);

    const resumed: NotifyEvent[] = [];
    const again = notifyingEvents({ emit: (e) => resumed.push(e) });
    again.persisted(file({ maxTokens: 1000, totalTokens: 850 }), []);
    again.persisted(file({ maxTokens: 1000, totalTokens: 870 }), [tick(4, "ok")]);
    expect(resumed.filter((e) => e.event === "budget")).toEqual([]);
  });
});

describe("settings", () => {
  it("notify-on names the valid events; notify-url must be http(s); [notify] in ravenclaws.toml", () => {
    expect(() =>
      resolveRunSettings({ env: {}, flags: { notifyOn: ["completed", "done"] } }),
    ).toThrow(/approval-needed, failed, completed, budget, attention, ok/);
    expect(() =>
      resolveRunSettings({ env: {}, flags: { notifyUrl: "ftp://example.com/x" } }),
    ).toThrow(/http:\/\/ or https:\/\//);
    expect(() => resolveRunSettings({ env: {}, flags: { notifyTokenEnv: "Bearer abc" } })).toThrow(
      /environment variable name/,
    );
    const { settings: resolved } = resolveRunSettings({
      env: {},
      flags: {},
      toml: {
        path: "/x/ravenclaws.toml",
        data: { notify: { url: "https://ntfy.sh/topic", on: ["failed"], token_env: "NTFY_TOKEN" } },
      },
    });
    expect(resolved).toMatchObject({
      notifyUrl: "https://ntfy.sh/topic",
      notifyOn: ["failed"],
      notifyTokenEnv: "NTFY_TOKEN",
    });
    expect(resolveRunSettings({ env: {}, flags: {} }).settings.notifyOn).toEqual([
      "approval-needed",
      "failed",
      "completed",
      "budget",
      "attention",
    ]);
  });
});
