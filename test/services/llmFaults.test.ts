/**
 * Model faults against the fake OpenAI server with the real SDK: rate limits
 * and `retry-after`, 5xx retried by the SDK only, timeouts, refused and lost
 * connections, malformed bodies, context-length overflows, and the fatal ones.
 */
import { afterEach, describe, expect, it } from "vitest";
import { LlmError } from "../../src/errors.js";
import type { AssessInput } from "../../src/machines/heartbeat.types.js";
import type { CallModelInput } from "../../src/machines/toolLoop.types.js";
import {
  createOpenAIClient,
  guardedFetch,
  LlmService,
  type LlmSettings,
  MAX_RETRY_AFTER_MS,
  retryAfterMs,
} from "../../src/services/llm.js";
import { SHRUNK_PROGRESS_CHARS, SHRUNK_TOOL_OUTPUT_CHARS } from "../../src/services/prompts.js";
import {
  DEFAULT_ASSESSMENT,
  DEFAULT_PLAN,
  errorReply,
  type FakeOpenAI,
  type Handler,
  jsonMessage,
  message,
  type RecordedRequest,
  type Reply,
  startFakeOpenAI,
} from "../support/fakeOpenAI.js";

const servers: FakeOpenAI[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A fake server whose chat requests are timed, and a service pointed at it. */
async function setup(handler: Handler, overrides: Partial<LlmSettings> = {}) {
  const times: number[] = [];
  const fake = await startFakeOpenAI((req, index) => {
    times.push(Date.now());
    return handler(req, index);
  });
  servers.push(fake);
  const settings: LlmSettings = {
    baseURL: fake.baseURL,
    apiKey: "sk-test",
    model: "test-model",
    timeoutMs: 5_000,
    maxRetries: 2,
    ...overrides,
  };
  const llm = new LlmService(createOpenAIClient(settings), settings);
  const gaps = () => times.slice(1).map((t, i) => t - (times[i] ?? t));
  return { fake, llm, settings, times, gaps };
}

async function rejection(promise: Promise<unknown>): Promise<LlmError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(LlmError);
  return error as LlmError;
}

const assessInput = (overrides: Partial<AssessInput> = {}): AssessInput => ({
  goal: "Write a haiku",
  tick: 3,
  progress: "Drafted two lines.",
  digests: [{ tick: 2, at: "2026-03-14T10:05:00.000Z", outcome: "ok", summary: "DIGEST-TWO" }],
  wakeReason: "timer",
  ...overrides,
});

const ok = () => jsonMessage(DEFAULT_ASSESSMENT);
/** Fails the first `n` requests with `reply`, then answers `then`. */
const failFirst =
  (n: number, reply: Reply, then: () => Reply = ok): Handler =>
  (_req, index) =>
    index < n ? reply : then();

describe("429 rate limits", () => {
  it("honours retry-after-ms between attempts", async () => {
    const { llm, times, gaps } = await setup(
      failFirst(2, errorReply(429, { headers: { "retry-after-ms": "300" } })),
    );
    const out = await llm.assess(assessInput());
    expect(out.assessment).toEqual(DEFAULT_ASSESSMENT);
    expect(times).toHaveLength(3);
    for (const gap of gaps()) {
      expect(gap).toBeGreaterThanOrEqual(250);
      expect(gap).toBeLessThan(2_000);
    }
  });

  it("honours retry-after in seconds", async () => {
    const { llm, times, gaps } = await setup(
      failFirst(1, errorReply(429, { headers: { "retry-after": "1" } })),
      { maxRetries: 1 },
    );
    await llm.assess(assessInput());
    expect(times).toHaveLength(2);
    expect(gaps()[0]).toBeGreaterThanOrEqual(900);
    expect(gaps()[0]).toBeLessThan(3_000);
  });

  it("does not wait out a retry-after beyond a minute: the call fails at once as rate-limited (not fatal)", async () => {
    const { llm, times } = await setup(() =>
      errorReply(429, { headers: { "retry-after": "3600" } }),
    );
    const started = Date.now();
    const error = await rejection(llm.assess(assessInput()));
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(times).toHaveLength(1);
    expect(error).toMatchObject({ kind: "rate-limited", fatal: false, status: 429 });
  });

  it("gives up after the SDK's retries with a rate-limited error that fails only the tick", async () => {
    const { llm, times } = await setup(() =>
      errorReply(429, { headers: { "retry-after-ms": "5" } }),
    );
    const error = await rejection(llm.assess(assessInput()));
    expect(times).toHaveLength(3);
    expect(error).toMatchObject({ kind: "rate-limited", fatal: false });
  });

  it("aborts at once while the SDK waits out a retry-after", async () => {
    const { llm, times } = await setup(() => errorReply(429, { headers: { "retry-after": "30" } }));
    const controller = new AbortController();
    const pending = llm.assess(assessInput(), controller.signal);
    while (times.length === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    const abortedAt = Date.now();
    controller.abort();
    const error = await rejection(pending);
    expect(Date.now() - abortedAt).toBeLessThan(300);
    expect(error.kind).toBe("aborted");
  });
});

describe("5xx: retried by the SDK only (one retry layer)", () => {
  for (const status of [500, 502, 503]) {
    for (const maxRetries of [0, 2]) {
      it(`${status} with maxRetries ${maxRetries}: exactly ${1 + maxRetries} requests, then a server error (not fatal)`, async () => {
        const { llm, times } = await setup(
          () => errorReply(status, { headers: { "retry-after-ms": "5" } }),
          { maxRetries },
        );
        const error = await rejection(
          llm.plan({ ...assessInput(), assessment: DEFAULT_ASSESSMENT }),
        );
        expect(times).toHaveLength(1 + maxRetries);
        expect(error).toMatchObject({ kind: "server", fatal: false, status });
      });
    }
  }

  it("backs off exponentially without a retry-after (the SDK's 0.5 s, 1 s, with jitter)", async () => {
    const { llm, gaps } = await setup(
      failFirst(2, errorReply(503), () => jsonMessage(DEFAULT_PLAN)),
    );
    const out = await llm.plan({ ...assessInput(), assessment: DEFAULT_ASSESSMENT });
    expect(out.plan).toEqual(DEFAULT_PLAN);
    const [first, second] = gaps();
    expect(first).toBeGreaterThanOrEqual(350);
    expect(second).toBeGreaterThanOrEqual(700);
    expect(second ?? 0).toBeGreaterThan((first ?? 0) * 1.2);
  });
});

describe("timeouts and connections", () => {
  it("times out a hanging request after --request-timeout (1 s), not fatal", async () => {
    const { llm, times } = await setup(() => ({ kind: "hang" }), {
      timeoutMs: 1_000,
      maxRetries: 0,
    });
    const started = Date.now();
    const error = await rejection(llm.assess(assessInput()));
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(3_000);
    expect(times).toHaveLength(1);
    expect(error).toMatchObject({ kind: "timeout", fatal: false });
    expect(error.hint).toContain("--request-timeout");
  });

  it("times out a body that stalls after the headers (the whole response is bounded), not fatal", async () => {
    const { llm, times } = await setup(() => ({ kind: "stall" }), {
      timeoutMs: 1_000,
      maxRetries: 0,
    });
    // Without the bound this never settles and the test times out.
    const error = await rejection(llm.assess(assessInput()));
    expect(times).toHaveLength(1);
    expect(error).toMatchObject({ kind: "timeout", fatal: false });
    expect(error.message).toContain("did not arrive in full");
    expect(error.hint).toContain("--request-timeout");
  });

  for (const declareLength of [false, true]) {
    it(`cuts off a 200 MB body (${declareLength ? "with" : "without"} content-length) and fails the call, not the heartbeat`, async () => {
      const { llm, fake } = await setup(() => ({ kind: "huge", bytes: 200e6, declareLength }), {
        maxRetries: 0,
        timeoutMs: 60_000,
      });
      const error = await rejection(llm.assess(assessInput()));
      expect(error).toMatchObject({ kind: "too-large", fatal: false });
      expect(error.message).toContain("16 MB");
      // The server stops being read near the cap (socket buffers aside), far from 200 MB.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(fake.bytesSent()).toBeLessThan(40e6);
    });
  }

  it("the SDK retries a timed-out request too: 1 + maxRetries requests", async () => {
    const { llm, times } = await setup(() => ({ kind: "hang" }), {
      timeoutMs: 300,
      maxRetries: 1,
    });
    const error = await rejection(llm.assess(assessInput()));
    expect(error.kind).toBe("timeout");
    expect(times).toHaveLength(2);
  });

  it("a server never reached (connection refused) is fatal, with a hint about --base-url", async () => {
    const closed = await startFakeOpenAI();
    const baseURL = closed.baseURL;
    await closed.close();
    const settings = { baseURL, apiKey: "k", model: "m", timeoutMs: 2_000, maxRetries: 0 };
    const llm = new LlmService(createOpenAIClient(settings), settings);
    const error = await rejection(llm.assess(assessInput()));
    expect(error).toMatchObject({ kind: "unreachable", fatal: true });
    expect(error.hint).toContain("--base-url");
  });

  it("a server that answered before and then refuses connections fails only the call", async () => {
    const { fake, llm } = await setup(ok, { maxRetries: 0 });
    await llm.assess(assessInput());
    await fake.close();
    const error = await rejection(llm.assess(assessInput()));
    expect(error).toMatchObject({ kind: "connection", fatal: false, code: "llm-connection" });
    expect(error.message).toContain("Lost the connection");
  });

  it("a 200 with a malformed body fails the call (bad-output, not fatal) and counts as reached", async () => {
    const { fake, llm } = await setup(
      () => ({ kind: "raw", status: 200, body: '{"id": "x", "choices": [' }),
      { maxRetries: 0 },
    );
    const error = await rejection(
      llm.callWithTools(
        {
          goal: "g",
          tick: 1,
          progress: "",
          plan: { steps: [...DEFAULT_PLAN.steps] },
          transcript: [],
          lastCall: false,
          spentTokens: 0,
        },
        [],
      ),
    );
    expect(error).toMatchObject({ kind: "bad-output", fatal: false });
    expect(fake.chatRequests()).toHaveLength(1);
    await fake.close();
    expect((await rejection(llm.assess(assessInput()))).kind).toBe("connection");
  });
});

describe("context_length_exceeded: shrink and retry once", () => {
  const tooLong = errorReply(400, {
    message:
      "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
    code: "context_length_exceeded",
    param: "messages",
  });
  const userText = (req: RecordedRequest | undefined): string =>
    ((req?.body.messages ?? []) as Array<{ role: string; content: string }>)
      .filter((m) => m.role === "user")
      .map((m) => m.content)
      .join("\n");

  it("assess: retries once without digests and with the progress clipped", async () => {
    const { fake, llm } = await setup(failFirst(1, tooLong));
    const progress = "p".repeat(5_000);
    const out = await llm.assess(assessInput({ progress }));
    expect(out.assessment).toEqual(DEFAULT_ASSESSMENT);
    const [first, second] = fake.chatRequests();
    expect(userText(first)).toContain("DIGEST-TWO");
    expect(userText(first)).toContain(progress);
    expect(userText(second)).not.toContain("DIGEST-TWO");
    expect(userText(second)).not.toContain("p".repeat(SHRUNK_PROGRESS_CHARS + 1));
    expect(userText(second)).toContain("p".repeat(SHRUNK_PROGRESS_CHARS));
    expect(userText(second).length).toBeLessThan(userText(first).length - 4_000);
  });

  it("execute: clips earlier tool outputs but keeps the latest round whole", async () => {
    const { fake, llm } = await setup(failFirst(1, tooLong, () => message("done")));
    const big = (tag: string) => `${tag}:${"x".repeat(4_000)}`;
    const input: CallModelInput = {
      goal: "g",
      tick: 1,
      progress: "q".repeat(3_000),
      plan: { steps: [...DEFAULT_PLAN.steps] },
      transcript: [
        {
          role: "assistant",
          content: null,
          toolCalls: [{ id: "a", name: "read_file", arguments: "{}" }],
        },
        { role: "tool", callId: "a", content: big("OLD") },
        {
          role: "assistant",
          content: null,
          toolCalls: [{ id: "b", name: "read_file", arguments: "{}" }],
        },
        { role: "tool", callId: "b", content: big("NEW") },
      ],
      lastCall: false,
      spentTokens: 0,
    };
    const out = await llm.callWithTools(input, []);
    expect(out.content).toBe("done");
    const second = fake.chatRequests()[1];
    const tools = (
      (second?.body.messages ?? []) as Array<{ role: string; content: string }>
    ).filter((m) => m.role === "tool");
    expect(tools[0]?.content.length).toBeLessThan(SHRUNK_TOOL_OUTPUT_CHARS + 100);
    expect(tools[1]?.content).toBe(big("NEW"));
    expect(userText(second)).not.toContain("q".repeat(SHRUNK_PROGRESS_CHARS + 1));
  });

  it("a prompt still too long after shrinking fails the call (context-length, not fatal) after exactly 2 requests", async () => {
    const { fake, llm } = await setup(() => tooLong);
    const error = await rejection(llm.assess(assessInput()));
    expect(fake.chatRequests()).toHaveLength(2);
    expect(error).toMatchObject({
      kind: "context-length",
      fatal: false,
      code: "llm-context-length",
    });
    expect(error.hint).toContain("larger context window");
  });

  it("recognises servers that only say so in the message (vLLM, llama.cpp style)", async () => {
    const { fake, llm } = await setup(
      failFirst(
        1,
        errorReply(400, { message: "This model's maximum context length is 4096 tokens." }),
      ),
    );
    await llm.assess(assessInput());
    expect(fake.chatRequests()).toHaveLength(2);
  });

  it("does not switch to text mode on a context-length error", async () => {
    const { fake, llm } = await setup(failFirst(1, tooLong));
    await llm.assess(assessInput());
    await llm.assess(assessInput());
    expect(fake.chatRequests().every((r) => r.body.response_format)).toBe(true);
  });
});

describe("fatal at once: what to fix", () => {
  const cases: Array<{ name: string; reply: Reply; kind: string; hint: RegExp }> = [
    {
      name: "429 insufficient_quota",
      reply: errorReply(429, {
        message: "You exceeded your current quota.",
        type: "insufficient_quota",
        code: "insufficient_quota",
      }),
      kind: "quota",
      hint: /credit|quota/i,
    },
    { name: "401", reply: errorReply(401), kind: "auth", hint: /--api-key|OPENAI_API_KEY/ },
    { name: "403", reply: errorReply(403), kind: "forbidden", hint: /API key may use this model/ },
    { name: "404", reply: errorReply(404), kind: "model-not-found", hint: /--model/ },
  ];
  for (const c of cases) {
    it(`${c.name}: one request, no retry, fatal ${c.kind} with a hint`, async () => {
      const { times, llm } = await setup(() => c.reply, { maxRetries: 3 });
      const started = Date.now();
      const error = await rejection(llm.assess(assessInput()));
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(times).toHaveLength(1);
      expect(error).toMatchObject({ kind: c.kind, fatal: true });
      expect(error.hint).toMatch(c.hint);
    });
  }
});

describe("retryAfterMs and guardedFetch", () => {
  it("reads retry-after-ms, retry-after seconds and HTTP dates", () => {
    const now = Date.parse("2026-03-14T10:00:00.000Z");
    expect(retryAfterMs(new Headers({ "retry-after-ms": "250" }), now)).toBe(250);
    expect(retryAfterMs(new Headers({ "retry-after": "2" }), now)).toBe(2_000);
    expect(retryAfterMs(new Headers({ "retry-after": "Sat, 14 Mar 2026 10:00:30 GMT" }), now)).toBe(
      30_000,
    );
    expect(retryAfterMs(new Headers({}), now)).toBeNull();
  });

  it("marks hopeless responses x-should-retry: false and leaves the others alone", async () => {
    const reply = (status: number, headers: Record<string, string>, body = "{}") =>
      guardedFetch(async () => new Response(body, { status, headers }))("http://x/");
    const long = `${MAX_RETRY_AFTER_MS / 1000 + 1}`;
    expect((await reply(429, { "retry-after": long })).headers.get("x-should-retry")).toBe("false");
    expect((await reply(503, { "retry-after": long })).headers.get("x-should-retry")).toBe("false");
    const quota = await reply(429, {}, '{"error":{"code":"insufficient_quota"}}');
    expect(quota.headers.get("x-should-retry")).toBe("false");
    expect(await quota.text()).toContain("insufficient_quota");
    expect((await reply(429, { "retry-after": "1" })).headers.get("x-should-retry")).toBeNull();
    expect((await reply(500, {})).headers.get("x-should-retry")).toBeNull();
    expect((await reply(400, {})).headers.get("x-should-retry")).toBeNull();
  });
});
