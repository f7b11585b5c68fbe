import type OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { LlmError } from "../../src/errors.js";
import type { AssessInput, PlanInput } from "../../src/machines/heartbeat.types.js";
import { PROGRESS_LIMIT } from "../../src/machines/shared.js";
import type { CallModelInput } from "../../src/machines/toolLoop.types.js";
import {
  createOpenAIClient,
  extractJson,
  LlmService,
  type LlmSettings,
} from "../../src/services/llm.js";
import { formatNow, LAST_CALL_NOTE, SYSTEM_PROMPT } from "../../src/services/prompts.js";
import {
  classify,
  DEFAULT_ASSESSMENT,
  errorReply,
  type FakeOpenAI,
  type Handler,
  jsonMessage,
  message,
  type RecordedRequest,
  type Reply,
  scripted,
  startFakeOpenAI,
  toolCalls,
} from "../support/fakeOpenAI.js";

const NOW = new Date("2026-03-14T15:09:26.000Z");
const MODEL = "test-model";

const servers: FakeOpenAI[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function settingsFor(baseURL: string, overrides: Partial<LlmSettings> = {}): LlmSettings {
  return {
    baseURL,
    apiKey: "sk-test",
    model: MODEL,
    timeoutMs: 5_000,
    maxRetries: 0,
    ...overrides,
  };
}

async function setup(
  handler?: Handler,
  overrides: Partial<LlmSettings> = {},
): Promise<{ fake: FakeOpenAI; llm: LlmService; settings: LlmSettings }> {
  const fake = await startFakeOpenAI(handler);
  servers.push(fake);
  const settings = settingsFor(fake.baseURL, overrides);
  const llm = new LlmService(createOpenAIClient(settings), settings, () => NOW);
  return { fake, llm, settings };
}

/** Awaits a promise that must reject with an LlmError and returns the error. */
async function llmRejection(promise: Promise<unknown>): Promise<LlmError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(LlmError);
  return caught as LlmError;
}

function assessInput(overrides: Partial<AssessInput> = {}): AssessInput {
  return {
    goal: "Write a haiku about ravens into poem.txt",
    tick: 3,
    progress: "Drafted two lines.",
    digests: [
      { tick: 1, at: "2026-03-14T10:00:00.000Z", outcome: "ok", summary: "created poem.txt" },
      { tick: 2, at: "2026-03-14T10:05:00.000Z", outcome: "idle", summary: "nothing to do" },
    ],
    wakeReason: "timer",
    ...overrides,
  };
}

function planInput(overrides: Partial<PlanInput> = {}): PlanInput {
  return {
    goal: "Write a haiku",
    tick: 4,
    progress: "Two lines drafted.",
    assessment: { ...DEFAULT_ASSESSMENT },
    ...overrides,
  };
}

function callInput(overrides: Partial<CallModelInput> = {}): CallModelInput {
  return {
    goal: "Write a haiku",
    tick: 5,
    progress: "Two lines drafted.",
    plan: { steps: ["Read poem.txt", "Add the third line"] },
    spentTokens: 0,
    transcript: [],
    lastCall: false,
    ...overrides,
  };
}

const TOOLS: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  {
    type: "function",
    function: {
      name: "read_file",
      description: "Read a file",
      parameters: {
        type: "object",
        properties: { path: { type: "string" } },
        required: ["path"],
        additionalProperties: false,
      },
    },
  },
];

type WireMessage = { role: string; content?: unknown; tool_calls?: unknown; tool_call_id?: string };

function messagesOf(req: RecordedRequest | undefined): WireMessage[] {
  expect(req).toBeDefined();
  return (req?.body.messages ?? []) as WireMessage[];
}

function lastUserText(req: RecordedRequest | undefined): string {
  const user = messagesOf(req).filter((m) => m.role === "user");
  const last = user.at(-1)?.content;
  expect(typeof last).toBe("string");
  return last as string;
}

const ASSESSMENT_KEYS = [
  "actionNeeded",
  "assessment",
  "attention",
  "checklist",
  "goalComplete",
  "progressSummary",
];

describe("LlmService.assess: request", () => {
  it("sends a strict json_schema response_format named assessment with its six required properties", async () => {
    const { fake, llm } = await setup(() => jsonMessage(DEFAULT_ASSESSMENT));
    await llm.assess(assessInput());

    const [req] = fake.chatRequests();
    expect(fake.chatRequests()).toHaveLength(1);
    expect(req?.body.model).toBe(MODEL);
    const rf = req?.body.response_format;
    expect(rf.type).toBe("json_schema");
    expect(rf.json_schema.name).toBe("assessment");
    expect(rf.json_schema.strict).toBe(true);
    const schema = rf.json_schema.schema;
    expect(schema.type).toBe("object");
    expect(schema.$schema).toBeUndefined();
    expect(schema.additionalProperties).toBe(false);
    expect([...schema.required].sort()).toEqual(ASSESSMENT_KEYS);
    expect(Object.keys(schema.properties).sort()).toEqual(ASSESSMENT_KEYS);
    expect(schema.properties.goalComplete.type).toBe("boolean");
    expect(schema.properties.actionNeeded.type).toBe("boolean");
    expect(schema.properties.assessment.type).toBe("string");
    expect(schema.properties.progressSummary.type).toBe("string");
    // Strict mode needs every key: `attention` is required but may be null.
    expect(schema.properties.attention.type).toEqual(["string", "null"]);
    // The checklist update: required but nullable (strict mode), no `default` keyword anywhere.
    expect(JSON.stringify(schema)).not.toContain('"default"');
    const checklist = schema.properties.checklist.anyOf;
    expect(checklist.map((s: { type: string }) => s.type).sort()).toEqual(["null", "object"]);
    expect(req?.body.tools).toBeUndefined();
    expect(classify(req as RecordedRequest)).toBe("assess");
  });

  it("reads the checklist update (tasks done, recurring tasks added with a duration) and defaults it when absent", async () => {
    const { llm } = await setup((_req, i) =>
      jsonMessage(
        i === 0
          ? {
              ...DEFAULT_ASSESSMENT,
              checklist: {
                done: [" Check the plants "],
                add: [
                  { every: "2h", task: "Water the fern" },
                  { every: "soon", task: "Dropped: not a duration" },
                ],
              },
            }
          : DEFAULT_ASSESSMENT,
      ),
    );
    const first = await llm.assess(assessInput());
    expect(first.assessment.checklist).toEqual({
      done: ["Check the plants"],
      add: [{ task: "Water the fern", everySec: 7200 }],
    });
    const second = await llm.assess(assessInput());
    expect(second.assessment.checklist).toBeUndefined();
  });

  it("records the cached prompt tokens the server reports (prompt_tokens_details.cached_tokens)", async () => {
    const { llm } = await setup((_req, i) =>
      jsonMessage(DEFAULT_ASSESSMENT, {
        usage:
          i === 0
            ? { prompt_tokens: 1000, completion_tokens: 50, cached_tokens: 768 }
            : { prompt_tokens: 1000, completion_tokens: 50 },
      }),
    );
    expect((await llm.assess(assessInput())).usage).toEqual({
      calls: 1,
      promptTokens: 1000,
      completionTokens: 50,
      totalTokens: 1050,
      cachedTokens: 768,
    });
    expect((await llm.assess(assessInput())).usage.cachedTokens).toBeUndefined();
  });

  it("opens with the system prompt, byte-identical across calls with different ticks and progress", async () => {
    const { fake, llm } = await setup(() => jsonMessage(DEFAULT_ASSESSMENT));
    await llm.assess(assessInput({ tick: 1, progress: "", digests: [], wakeReason: "start" }));
    await llm.assess(assessInput({ tick: 42, progress: "Lots done by now." }));

    const [first, second] = fake.chatRequests();
    const m1 = messagesOf(first);
    const m2 = messagesOf(second);
    expect(m1).toHaveLength(2);
    expect(m2).toHaveLength(2);
    expect(m1[0]).toEqual({ role: "system", content: SYSTEM_PROMPT });
    expect(m2[0]).toEqual({ role: "system", content: SYSTEM_PROMPT });
    expect(JSON.stringify(m1[0])).toBe(JSON.stringify(m2[0]));
    expect(m1[1]?.role).toBe("user");
    expect(m1[1]?.content).not.toBe(m2[1]?.content);
  });

  it("puts the goal, tick, current time with offset, progress and only the given digests in the user message", async () => {
    const { fake, llm } = await setup(() => jsonMessage(DEFAULT_ASSESSMENT));
    const input = assessInput({
      tick: 7,
      progress: "PROGRESS-MARKER: two lines drafted.",
      digests: [
        { tick: 5, at: "2026-03-14T10:00:00.000Z", outcome: "ok", summary: "DIGEST-FIVE" },
        { tick: 6, at: "2026-03-14T10:05:00.000Z", outcome: "failed", summary: "DIGEST-SIX" },
      ],
    });
    await llm.assess(input);

    const text = lastUserText(fake.chatRequests()[0]);
    expect(text).toContain(`Goal: ${input.goal}`);
    expect(text).toMatch(/^Tick: 7\b/m);
    expect(text).toContain(`Current time: ${formatNow(NOW)}`);
    expect(text).toMatch(
      /Current time: \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2} \([^)]+\)/,
    );
    expect(text).toContain("PROGRESS-MARKER: two lines drafted.");
    expect(text).toContain("- tick 5 [ok]: DIGEST-FIVE");
    expect(text).toContain("- tick 6 [failed]: DIGEST-SIX");
    // Exactly the digests given: no other tick lines (no tick 1-4 history).
    expect(text.match(/^- tick \d+ /gm)).toEqual(["- tick 5 ", "- tick 6 "]);
    expect(text).not.toContain("Reply with JSON only");
  });

  it("formats the current time in the local zone with its offset", async () => {
    const saved = process.env.TZ;
    try {
      process.env.TZ = "America/St_Johns";
      expect(formatNow(new Date("2026-01-15T12:00:00.000Z"))).toBe(
        "2026-01-15T08:30:00-03:30 (America/St_Johns)",
      );
      process.env.TZ = "Asia/Tokyo";
      expect(formatNow(new Date("2026-01-15T20:00:00.000Z"))).toBe(
        "2026-01-16T05:00:00+09:00 (Asia/Tokyo)",
      );
      const { fake, llm } = await setup(() => jsonMessage(DEFAULT_ASSESSMENT));
      await llm.assess(assessInput());
      expect(lastUserText(fake.chatRequests()[0])).toContain(
        "Current time: 2026-03-15T00:09:26+09:00 (Asia/Tokyo)",
      );
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });
});

describe("LlmService.assess: reply", () => {
  it("keeps the assessment's attention (trimmed, clipped); null or blank leaves it out", async () => {
    const base = {
      goalComplete: false,
      actionNeeded: false,
      assessment: "The build broke.",
      progressSummary: "Builds were green until today.",
    };
    const replies = [
      { ...base, attention: "  The release needs your signature.  " },
      { ...base, attention: "x".repeat(900) },
      { ...base, attention: "   " },
      { ...base, attention: null },
    ];
    const { llm } = await setup((_req, i) => jsonMessage(replies[i]));
    expect((await llm.assess(assessInput())).assessment).toEqual({
      ...base,
      attention: "The release needs your signature.",
    });
    expect((await llm.assess(assessInput())).assessment.attention).toHaveLength(500);
    expect((await llm.assess(assessInput())).assessment).toEqual(base);
    expect((await llm.assess(assessInput())).assessment).toEqual(base);
  });

  it("parses a valid reply into the assessment and counts usage", async () => {
    const reply = {
      goalComplete: false,
      actionNeeded: true,
      assessment: "Two of three lines are written.",
      progressSummary: "poem.txt has two lines.",
    };
    const { llm } = await setup(() =>
      jsonMessage(reply, { usage: { prompt_tokens: 123, completion_tokens: 45 } }),
    );
    const out = await llm.assess(assessInput());
    expect(out).toEqual({
      assessment: reply,
      usage: { calls: 1, promptTokens: 123, completionTokens: 45, totalTokens: 168 },
    });
  });

  it("charges a reply without usage an estimate: characters sent and received / 4, marked", async () => {
    const { llm, fake } = await setup(() => jsonMessage(DEFAULT_ASSESSMENT, { usage: null }));
    const out = await llm.assess(assessInput());
    const body = fake.chatRequests()[0]?.body;
    const sent =
      body.messages.reduce((n: number, m: { content: string }) => n + m.content.length, 0) +
      JSON.stringify(body.response_format).length;
    const received = JSON.stringify(DEFAULT_ASSESSMENT).length;
    expect(out.usage).toEqual({
      calls: 1,
      promptTokens: Math.ceil(sent / 4),
      completionTokens: Math.ceil(received / 4),
      totalTokens: Math.ceil(sent / 4) + Math.ceil(received / 4),
      estimatedCalls: 1,
    });
    expect(out.assessment).toEqual(DEFAULT_ASSESSMENT);
  });

  it("charges an answered reply that is not JSON: the usage travels on the error", async () => {
    const { llm } = await setup(() =>
      message("I'd rather chat.", { usage: { prompt_tokens: 1000, completion_tokens: 50 } }),
    );
    const error = await llm.assess(assessInput()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LlmError);
    expect((error as LlmError).code).toBe("llm-bad-output");
    expect((error as LlmError).usage).toEqual({
      calls: 1,
      promptTokens: 1000,
      completionTokens: 50,
      totalTokens: 1050,
    });
  });

  it("takes completion from the boolean only, never from the text", async () => {
    const { llm } = await setup(() =>
      jsonMessage({
        goalComplete: false,
        actionNeeded: true,
        assessment: "not GOAL_COMPLETE yet [DONE]",
        progressSummary: "GOAL_COMPLETE DONE goal complete",
      }),
    );
    const out = await llm.assess(assessInput());
    expect(out.assessment.goalComplete).toBe(false);
    expect(out.assessment.assessment).toBe("not GOAL_COMPLETE yet [DONE]");
  });

  it("reports goalComplete true when the boolean says so", async () => {
    const { llm } = await setup(() =>
      jsonMessage({ ...DEFAULT_ASSESSMENT, goalComplete: true, actionNeeded: false }),
    );
    const out = await llm.assess(assessInput());
    expect(out.assessment.goalComplete).toBe(true);
    expect(out.assessment.actionNeeded).toBe(false);
  });

  it("bounds the assessment to 2000 and the progress summary to PROGRESS_LIMIT characters", async () => {
    const { llm } = await setup(() =>
      jsonMessage({
        ...DEFAULT_ASSESSMENT,
        assessment: "a".repeat(2500),
        progressSummary: "p".repeat(1600),
      }),
    );
    const out = await llm.assess(assessInput());
    expect(out.assessment.assessment).toBe("a".repeat(2000));
    expect(out.assessment.progressSummary).toBe("p".repeat(PROGRESS_LIMIT));
  });

  it("rejects a reply that is not JSON with bad-output (not fatal)", async () => {
    const { llm } = await setup(() => message("I think things are going well!"));
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.kind).toBe("bad-output");
    expect(error.code).toBe("llm-bad-output");
    expect(error.fatal).toBe(false);
    expect(error.message).toContain("not JSON");
  });

  it("rejects JSON that fails the schema with bad-output (not fatal), naming the field", async () => {
    const { llm } = await setup(() =>
      jsonMessage({ goalComplete: "yes", actionNeeded: true, assessment: "x" }),
    );
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.kind).toBe("bad-output");
    expect(error.fatal).toBe(false);
    expect(error.message).toContain("did not match its schema");
    expect(error.message).toContain("goalComplete");
    expect(error.message).toContain("progressSummary");
  });

  it("rejects an empty reply (null content) with bad-output", async () => {
    const { llm } = await setup(() => message(null));
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.kind).toBe("bad-output");
    expect(error.fatal).toBe(false);
  });

  it("rejects a 200 reply with a malformed body as a non-fatal error", async () => {
    const { llm } = await setup(() => ({ kind: "raw", status: 200, body: "{not json" }));
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.fatal).toBe(false);
  });
});

describe("LlmService: text-mode fallback for servers without response_format", () => {
  const refuseResponseFormat =
    (reply: (req: RecordedRequest) => Reply): Handler =>
    (req) =>
      req.body.response_format
        ? errorReply(400, {
            message: "Unsupported parameter: 'response_format' is not supported with this model.",
            param: "response_format",
          })
        : reply(req);

  it("retries once in text mode and extracts JSON from prose", async () => {
    const { fake, llm } = await setup(
      refuseResponseFormat(() =>
        message(
          `Sure! Here is my assessment: ${JSON.stringify(DEFAULT_ASSESSMENT)} Hope that helps.`,
          { usage: { prompt_tokens: 20, completion_tokens: 8 } },
        ),
      ),
    );
    const out = await llm.assess(assessInput());
    expect(out.assessment).toEqual(DEFAULT_ASSESSMENT);
    expect(out.usage).toEqual({ calls: 1, promptTokens: 20, completionTokens: 8, totalTokens: 28 });

    const reqs = fake.chatRequests();
    expect(reqs).toHaveLength(2);
    expect(reqs[0]?.body.response_format?.type).toBe("json_schema");
    const retry = reqs[1];
    expect(retry?.body).not.toHaveProperty("response_format");
    expect(messagesOf(retry)[0]).toEqual({ role: "system", content: SYSTEM_PROMPT });
    const text = lastUserText(retry);
    expect(text).toContain("Reply with JSON only");
    expect(text).toMatch(/^Schema name: assessment$/m);
    expect(text).toContain("goalComplete");
    expect(text).toContain(`Goal: ${assessInput().goal}`);
    expect(classify(retry as RecordedRequest)).toBe("assess");
  });

  it("extracts JSON from a ```json fence", async () => {
    const { llm } = await setup(
      refuseResponseFormat(() =>
        message(
          `Here you go:\n\`\`\`json\n${JSON.stringify(DEFAULT_ASSESSMENT, null, 2)}\n\`\`\`\n`,
        ),
      ),
    );
    const out = await llm.assess(assessInput());
    expect(out.assessment).toEqual(DEFAULT_ASSESSMENT);
  });

  it("goes straight to text mode on later calls (assess and plan)", async () => {
    const { fake, llm } = await setup(
      refuseResponseFormat((req) =>
        classify(req) === "plan"
          ? message(`\`\`\`json\n{"steps":["one","two"]}\n\`\`\``)
          : jsonMessage(DEFAULT_ASSESSMENT),
      ),
    );
    await llm.assess(assessInput());
    expect(fake.chatRequests()).toHaveLength(2);

    await llm.assess(assessInput({ tick: 4 }));
    expect(fake.chatRequests()).toHaveLength(3);

    const plan = await llm.plan(planInput());
    expect(plan.plan.steps).toEqual(["one", "two"]);
    const reqs = fake.chatRequests();
    expect(reqs).toHaveLength(4);
    expect(reqs.filter((r) => r.body.response_format !== undefined)).toHaveLength(1);
    expect(lastUserText(reqs[3])).toMatch(/^Schema name: plan$/m);
    expect(lastUserText(reqs[3])).toContain("Reply with JSON only");
  });

  it("fails with bad-output when the text-mode reply is not JSON", async () => {
    const { fake, llm } = await setup(refuseResponseFormat(() => message("no idea, sorry")));
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.kind).toBe("bad-output");
    expect(error.fatal).toBe(false);
    expect(fake.chatRequests()).toHaveLength(2);
  });

  it("does not fall back on a 400 unrelated to response_format", async () => {
    const { fake, llm } = await setup(() =>
      errorReply(400, { message: "messages: too many tokens" }),
    );
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.kind).toBe("bad-request");
    expect(error.status).toBe(400);
    expect(error.fatal).toBe(false);
    expect(fake.chatRequests()).toHaveLength(1);
  });
});

describe("LlmService: error mapping", () => {
  const cases: {
    name: string;
    reply: Reply;
    kind: LlmError["kind"];
    fatal: boolean;
    status: number;
  }[] = [
    { name: "401", reply: errorReply(401), kind: "auth", fatal: true, status: 401 },
    { name: "403", reply: errorReply(403), kind: "forbidden", fatal: true, status: 403 },
    { name: "404", reply: errorReply(404), kind: "model-not-found", fatal: true, status: 404 },
    {
      name: "429 insufficient_quota",
      reply: errorReply(429, {
        message: "You exceeded your current quota.",
        type: "insufficient_quota",
        code: "insufficient_quota",
      }),
      kind: "quota",
      fatal: true,
      status: 429,
    },
    {
      name: "429 plain",
      reply: errorReply(429, { message: "Rate limit reached." }),
      kind: "rate-limited",
      fatal: false,
      status: 429,
    },
    { name: "500", reply: errorReply(500), kind: "server", fatal: false, status: 500 },
    { name: "503", reply: errorReply(503), kind: "server", fatal: false, status: 503 },
  ];

  for (const c of cases) {
    it(`maps ${c.name} to ${c.kind} (fatal ${c.fatal})`, async () => {
      const { fake, llm } = await setup(() => c.reply);
      const error = await llmRejection(llm.assess(assessInput()));
      expect(error.kind).toBe(c.kind);
      expect(error.code).toBe(`llm-${c.kind}`);
      expect(error.fatal).toBe(c.fatal);
      expect(error.status).toBe(c.status);
      expect(fake.chatRequests()).toHaveLength(1);
    });
  }

  it("gives 401 a hint about the API key", async () => {
    const { llm } = await setup(() => errorReply(401, { message: "Incorrect API key provided" }));
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.kind).toBe("auth");
    expect(error.hint).toMatch(/api[ _-]?key/i);
    expect(error.message).toContain("401");
  });

  it("names the model in a 404", async () => {
    const { llm } = await setup(() => errorReply(404, { message: "The model does not exist" }));
    const error = await llmRejection(llm.plan(planInput()));
    expect(error.kind).toBe("model-not-found");
    expect(error.message).toContain(`"${MODEL}"`);
    expect(error.hint).toContain("--model");
  });

  it("maps the same errors from callWithTools", async () => {
    const { llm } = await setup(() =>
      errorReply(429, { code: "insufficient_quota", type: "insufficient_quota" }),
    );
    const error = await llmRejection(llm.callWithTools(callInput(), TOOLS));
    expect(error.kind).toBe("quota");
    expect(error.fatal).toBe(true);
  });

  it("maps a refused connection to unreachable (fatal)", async () => {
    const closed = await startFakeOpenAI();
    const baseURL = closed.baseURL;
    await closed.close();
    const settings = settingsFor(baseURL);
    const llm = new LlmService(createOpenAIClient(settings), settings, () => NOW);
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.kind).toBe("unreachable");
    expect(error.fatal).toBe(true);
    expect(error.message).toContain(baseURL);
    expect(error.hint).toContain("--base-url");
  });

  it("maps a request timeout to timeout (not fatal)", async () => {
    const { fake, llm } = await setup(() => ({ kind: "hang" }), { timeoutMs: 200 });
    const started = Date.now();
    const error = await llmRejection(llm.assess(assessInput()));
    expect(error.kind).toBe("timeout");
    expect(error.fatal).toBe(false);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(fake.chatRequests()).toHaveLength(1);
  });

  it("retries a 500 through the SDK when maxRetries allows it", async () => {
    const { fake, llm } = await setup(
      (_req, index) =>
        index === 0
          ? errorReply(500, { headers: { "retry-after-ms": "10" } })
          : jsonMessage(DEFAULT_ASSESSMENT),
      { maxRetries: 1 },
    );
    const out = await llm.assess(assessInput());
    expect(out.assessment).toEqual(DEFAULT_ASSESSMENT);
    expect(fake.chatRequests()).toHaveLength(2);
  });
});

describe("LlmService: abort", () => {
  it("rejects a hanging request within 500 ms of the signal being aborted", async () => {
    const { fake, llm } = await setup(() => ({ kind: "hang" }));
    const controller = new AbortController();
    const pending = llm.assess(assessInput(), controller.signal);
    // Wait until the server has the request, then abort.
    for (let i = 0; i < 100 && fake.chatRequests().length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(fake.chatRequests()).toHaveLength(1);
    const abortedAt = Date.now();
    controller.abort();
    const error = await llmRejection(pending);
    expect(Date.now() - abortedAt).toBeLessThan(500);
    expect(error.kind).toBe("aborted");
    expect(error.fatal).toBe(false);
  });

  it("aborts callWithTools too", async () => {
    const { llm } = await setup(() => ({ kind: "hang" }));
    const controller = new AbortController();
    const pending = llm.callWithTools(callInput(), TOOLS, controller.signal);
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    const error = await llmRejection(pending);
    expect(Date.now() - started).toBeLessThan(550);
    expect(error.kind).toBe("aborted");
  });
});

describe("LlmService.plan", () => {
  it("trims steps, drops empty ones and keeps at most 7", async () => {
    const { fake, llm } = await setup(
      scripted({
        plan: () =>
          jsonMessage({
            steps: [
              "  one  ",
              "",
              "   ",
              "two\n",
              "three",
              "four",
              "\tfive",
              "six",
              "seven",
              "eight",
            ],
          }),
      }),
    );
    const out = await llm.plan(planInput());
    expect(out.plan.steps).toEqual(["one", "two", "three", "four", "five", "six", "seven"]);
    expect(out.usage).toEqual({ calls: 1, promptTokens: 10, completionTokens: 5, totalTokens: 15 });

    const req = fake.chatRequests()[0];
    expect(req?.body.response_format.json_schema.name).toBe("plan");
    expect(req?.body.response_format.json_schema.strict).toBe(true);
    expect(req?.body.response_format.json_schema.schema.required).toEqual(["steps"]);
    expect(messagesOf(req)[0]).toEqual({ role: "system", content: SYSTEM_PROMPT });
    const text = lastUserText(req);
    expect(text).toContain("Goal: Write a haiku");
    expect(text).toMatch(/^Tick: 4$/m);
    expect(text).toContain(`Assessment: ${DEFAULT_ASSESSMENT.assessment}`);
  });

  it("rejects a plan without steps with bad-output", async () => {
    const { llm } = await setup(() => jsonMessage({ plan: ["a"] }));
    const error = await llmRejection(llm.plan(planInput()));
    expect(error.kind).toBe("bad-output");
    expect(error.fatal).toBe(false);
  });
});

describe("LlmService.callWithTools", () => {
  it("sends tools with parallel_tool_calls and returns the tool calls", async () => {
    const { fake, llm } = await setup(() =>
      toolCalls(
        [
          { id: "call_a", name: "read_file", arguments: { path: "poem.txt" } },
          { id: "call_b", name: "list_dir", arguments: '{"path":"."}' },
        ],
        { usage: { prompt_tokens: 50, completion_tokens: 7 } },
      ),
    );
    const out = await llm.callWithTools(callInput(), TOOLS);
    expect(out).toEqual({
      content: null,
      toolCalls: [
        { id: "call_a", name: "read_file", arguments: '{"path":"poem.txt"}' },
        { id: "call_b", name: "list_dir", arguments: '{"path":"."}' },
      ],
      usage: { calls: 1, promptTokens: 50, completionTokens: 7, totalTokens: 57 },
    });

    const req = fake.chatRequests()[0];
    expect(req?.body.model).toBe(MODEL);
    expect(req?.body.tools).toEqual(TOOLS);
    expect(req?.body.parallel_tool_calls).toBe(true);
    expect(req?.body).not.toHaveProperty("response_format");
    const msgs = messagesOf(req);
    expect(msgs).toHaveLength(2);
    expect(msgs[0]).toEqual({ role: "system", content: SYSTEM_PROMPT });
    expect(msgs[1]?.role).toBe("user");
    expect(msgs[1]?.content).toContain("1. Read poem.txt\n2. Add the third line");
    expect(msgs[1]?.content).toMatch(/^Tick: 5$/m);
  });

  it("returns the text reply when there are no tool calls", async () => {
    const { llm } = await setup(() => message("All done."));
    const out = await llm.callWithTools(callInput(), TOOLS);
    expect(out).toEqual({
      content: "All done.",
      toolCalls: [],
      usage: { calls: 1, promptTokens: 10, completionTokens: 5, totalTokens: 15 },
    });
  });

  it("makes up an id for a tool call that has none", async () => {
    const { llm } = await setup(() =>
      toolCalls([{ id: "", name: "read_file", arguments: { path: "a" } }]),
    );
    const out = await llm.callWithTools(callInput({ tick: 9 }), TOOLS);
    expect(out.toolCalls).toEqual([
      { id: "call_9_0_0", name: "read_file", arguments: '{"path":"a"}' },
    ]);
  });

  it("marks tool calls whose arguments are a JSON object or a number instead of a string", async () => {
    const { llm } = await setup(() =>
      toolCalls([
        { id: "a", name: "read_file", arguments: "", rawArguments: { path: "a" } },
        { id: "b", name: "read_file", arguments: "", rawArguments: 42 },
        { id: "c", name: "read_file", arguments: { path: "c" } },
      ]),
    );
    const out = await llm.callWithTools(callInput(), TOOLS);
    expect(out.toolCalls).toEqual([
      {
        id: "a",
        name: "read_file",
        arguments: '{"path":"a"}',
        argumentsError: "the arguments were sent as an object, not as a string of JSON text",
      },
      {
        id: "b",
        name: "read_file",
        arguments: "42",
        argumentsError: "the arguments were sent as a number, not as a string of JSON text",
      },
      { id: "c", name: "read_file", arguments: '{"path":"c"}' },
    ]);
  });

  it("on the last call sends no tools and adds the last-call note", async () => {
    const { fake, llm } = await setup(() => message("Report: added a line."));
    const out = await llm.callWithTools(callInput({ lastCall: true }), TOOLS);
    expect(out.content).toBe("Report: added a line.");
    expect(out.toolCalls).toEqual([]);

    const req = fake.chatRequests()[0];
    expect(req?.body).not.toHaveProperty("tools");
    expect(req?.body).not.toHaveProperty("parallel_tool_calls");
    const msgs = messagesOf(req);
    expect(msgs.at(-1)).toEqual({ role: "user", content: LAST_CALL_NOTE });
    expect(msgs.filter((m) => m.content === LAST_CALL_NOTE)).toHaveLength(1);
  });

  it("sends no tools when the tool list is empty", async () => {
    const { fake, llm } = await setup(() => message("ok"));
    await llm.callWithTools(callInput(), []);
    const req = fake.chatRequests()[0];
    expect(req?.body).not.toHaveProperty("tools");
    expect(req?.body).not.toHaveProperty("parallel_tool_calls");
  });

  it("turns the transcript into assistant messages with tool_calls and tool messages", async () => {
    const { fake, llm } = await setup(() => message("Done."));
    await llm.callWithTools(
      callInput({
        lastCall: true,
        transcript: [
          {
            role: "assistant",
            content: null,
            toolCalls: [
              { id: "call_1", name: "read_file", arguments: '{"path":"poem.txt"}' },
              { id: "call_2", name: "list_dir", arguments: '{"path":"."}' },
            ],
          },
          { role: "tool", callId: "call_1", content: "Ravens in the snow" },
          { role: "tool", callId: "call_2", content: "poem.txt" },
          { role: "assistant", content: "Thinking it over.", toolCalls: [] },
        ],
      }),
      TOOLS,
    );
    const msgs = messagesOf(fake.chatRequests()[0]);
    expect(msgs).toHaveLength(7);
    expect(msgs[0]?.role).toBe("system");
    expect(msgs[1]?.role).toBe("user");
    expect(msgs[2]).toEqual({
      role: "assistant",
      content: null,
      tool_calls: [
        {
          id: "call_1",
          type: "function",
          function: { name: "read_file", arguments: '{"path":"poem.txt"}' },
        },
        {
          id: "call_2",
          type: "function",
          function: { name: "list_dir", arguments: '{"path":"."}' },
        },
      ],
    });
    expect(msgs[3]).toEqual({
      role: "tool",
      tool_call_id: "call_1",
      content: "Ravens in the snow",
    });
    expect(msgs[4]).toEqual({ role: "tool", tool_call_id: "call_2", content: "poem.txt" });
    expect(msgs[5]).toEqual({ role: "assistant", content: "Thinking it over." });
    expect(msgs[6]).toEqual({ role: "user", content: LAST_CALL_NOTE });
  });
});

describe("extractJson", () => {
  it("parses plain JSON", () => {
    expect(extractJson('{"a":1,"b":[true,null]}')).toEqual({ a: 1, b: [true, null] });
    expect(extractJson('  \n{"a":1}\n  ')).toEqual({ a: 1 });
  });

  it("parses a fenced block, with or without the json tag", () => {
    expect(extractJson('Result:\n```json\n{"a":1}\n```\nThanks')).toEqual({ a: 1 });
    expect(extractJson('```\n{"b":2}\n```')).toEqual({ b: 2 });
    expect(extractJson('```JSON\n{"c":3}\n```')).toEqual({ c: 3 });
  });

  it("finds the object in prose around it", () => {
    expect(extractJson('Sure, here it is: {"a":{"b":2}} -- let me know.')).toEqual({
      a: { b: 2 },
    });
  });

  it("is not fooled by braces and quotes inside strings", () => {
    expect(extractJson('Answer: {"text":"a } b { c","q":"say \\"}\\""} done')).toEqual({
      text: "a } b { c",
      q: 'say "}"',
    });
  });

  it("throws when there is no JSON", () => {
    expect(() => extractJson("no json here at all")).toThrow(/no JSON object/);
    expect(() => extractJson("")).toThrow(/no JSON object/);
    expect(() => extractJson("{ unbalanced")).toThrow(/no JSON object/);
    expect(() => extractJson("{not: valid}")).toThrow(/no JSON object/);
  });
});
