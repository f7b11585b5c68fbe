import OpenAI, {
  APIConnectionError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  RateLimitError,
} from "openai";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  classify,
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
} from "./fakeOpenAI.js";

const servers: FakeOpenAI[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(handler?: Handler): Promise<{ fake: FakeOpenAI; client: OpenAI }> {
  const fake = await startFakeOpenAI(handler);
  servers.push(fake);
  const client = new OpenAI({ baseURL: fake.baseURL, apiKey: "sk-test", maxRetries: 0 });
  return { fake, client };
}

const userMsg = (content: string) => [{ role: "user" as const, content }];

/** A RecordedRequest for classify() tests. */
function chatReq(body: unknown): RecordedRequest {
  return { method: "POST", path: "/v1/chat/completions", headers: {}, body };
}

describe("fake OpenAI server: chat completions", () => {
  it("answers a message with default usage in the real wire format", async () => {
    const { fake, client } = await start(() => message("Hello there."));
    expect(fake.baseURL).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);

    const res = await client.chat.completions.create({
      model: "gpt-test",
      messages: userMsg("hi"),
    });

    expect(res.id).toMatch(/^chatcmpl-/);
    expect(res.object).toBe("chat.completion");
    expect(res.model).toBe("gpt-test");
    expect(Number.isInteger(res.created)).toBe(true);
    expect(Math.abs(res.created - Date.now() / 1000)).toBeLessThan(60);
    expect(res.choices).toHaveLength(1);
    const choice = res.choices[0];
    expect(choice?.index).toBe(0);
    expect(choice?.finish_reason).toBe("stop");
    expect(choice?.logprobs).toBeNull();
    expect(choice?.message).toEqual({ role: "assistant", content: "Hello there.", refusal: null });
    expect(res.usage).toEqual({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
  });

  it("reports custom usage, model and finish reason", async () => {
    const { client } = await start(() =>
      message("Cut off", {
        usage: { prompt_tokens: 7, completion_tokens: 3 },
        model: "other-model",
        finishReason: "length",
      }),
    );
    const res = await client.chat.completions.create({ model: "m", messages: userMsg("hi") });
    expect(res.usage).toEqual({ prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
    expect(res.model).toBe("other-model");
    expect(res.choices[0]?.finish_reason).toBe("length");
  });

  it("omits the usage field entirely when usage is null", async () => {
    const { client } = await start(() => message("No usage here.", { usage: null }));

    const data = await client.chat.completions.create({ model: "m", messages: userMsg("hi") });
    expect(data.usage).toBeUndefined();
    expect(data.choices[0]?.message.content).toBe("No usage here.");

    const response = await client.chat.completions
      .create({ model: "m", messages: userMsg("hi") })
      .asResponse();
    expect(response.headers.get("content-type")).toMatch(/^application\/json/);
    const raw = (await response.json()) as Record<string, unknown>;
    expect("usage" in raw).toBe(false);
    expect(raw.object).toBe("chat.completion");
  });

  it("round-trips tool calls", async () => {
    const { fake, client } = await start((_req, index) =>
      index === 0
        ? toolCalls([
            { name: "read_file", arguments: { path: "notes.txt" } },
            { name: "shell", arguments: '{"cmd":"ls"}' },
            { id: "call_custom", name: "noop", arguments: {} },
          ])
        : message("Read it."),
    );

    const first = await client.chat.completions.create({
      model: "m",
      messages: userMsg("read my notes"),
      tools: [
        {
          type: "function",
          function: { name: "read_file", parameters: { type: "object", properties: {} } },
        },
      ],
    });
    const choice = first.choices[0];
    expect(choice?.finish_reason).toBe("tool_calls");
    expect(choice?.message.content).toBeNull();
    const calls = choice?.message.tool_calls ?? [];
    expect(calls).toEqual([
      {
        id: "call_1",
        type: "function",
        function: { name: "read_file", arguments: '{"path":"notes.txt"}' },
      },
      { id: "call_2", type: "function", function: { name: "shell", arguments: '{"cmd":"ls"}' } },
      { id: "call_custom", type: "function", function: { name: "noop", arguments: "{}" } },
    ]);

    const assistant = choice?.message;
    if (!assistant) throw new Error("no assistant message");
    const second = await client.chat.completions.create({
      model: "m",
      messages: [
        ...userMsg("read my notes"),
        { role: "assistant", content: assistant.content, tool_calls: assistant.tool_calls },
        { role: "tool", tool_call_id: "call_1", content: "buy milk" },
      ],
    });
    expect(second.choices[0]?.message.content).toBe("Read it.");

    const sent = fake.chatRequests()[1]?.body;
    expect(sent.messages[1].tool_calls).toEqual(calls);
    expect(sent.messages[2]).toEqual({ role: "tool", tool_call_id: "call_1", content: "buy milk" });
  });

  it("answers after a delay", async () => {
    const { client } = await start(() => ({ kind: "delay", ms: 60, reply: message("late") }));
    const t0 = performance.now();
    const res = await client.chat.completions.create({ model: "m", messages: userMsg("hi") });
    expect(res.choices[0]?.message.content).toBe("late");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(50);
  });

  it("rejects stream: true with a 400", async () => {
    const { client } = await start(() => message("unused"));
    await expect(
      client.chat.completions.create({ model: "m", messages: userMsg("hi"), stream: true }),
    ).rejects.toBeInstanceOf(BadRequestError);
  });

  it("turns a throwing handler into a 500", async () => {
    const { client } = await start(() => {
      throw new Error("boom");
    });
    const err = await client.chat.completions
      .create({ model: "m", messages: userMsg("hi") })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as InternalServerError).message).toContain("boom");
  });
});

describe("fake OpenAI server: errors", () => {
  it("surfaces 401 as AuthenticationError with the envelope fields", async () => {
    const { client } = await start(() =>
      errorReply(401, { message: "Incorrect API key provided.", code: "invalid_api_key" }),
    );
    const err = await client.chat.completions
      .create({ model: "m", messages: userMsg("hi") })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    const authErr = err as AuthenticationError;
    expect(authErr.status).toBe(401);
    expect(authErr.message).toContain("Incorrect API key provided.");
    expect(authErr.code).toBe("invalid_api_key");
    expect(authErr.type).toBe("invalid_request_error");
    expect(authErr.headers.get("content-type")).toMatch(/^application\/json/);
  });

  it("surfaces 429 as RateLimitError carrying retry-after-ms", async () => {
    const { client } = await start(() =>
      errorReply(429, { message: "Slow down.", headers: { "retry-after-ms": "25" } }),
    );
    const err = await client.chat.completions
      .create({ model: "m", messages: userMsg("hi") })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as RateLimitError).headers.get("retry-after-ms")).toBe("25");
  });

  it("lets the SDK honour retry-after-ms when retries are enabled", async () => {
    const { fake } = await start((_req, index) =>
      index === 0
        ? errorReply(429, { message: "Slow down.", headers: { "retry-after-ms": "40" } })
        : message("Now it works."),
    );
    const client = new OpenAI({ baseURL: fake.baseURL, apiKey: "sk-test", maxRetries: 1 });
    const t0 = performance.now();
    const res = await client.chat.completions.create({ model: "m", messages: userMsg("hi") });
    expect(res.choices[0]?.message.content).toBe("Now it works.");
    expect(fake.chatRequests()).toHaveLength(2);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(30);
  });

  it("surfaces 500 as InternalServerError, with a default envelope for bare error replies", async () => {
    const { client } = await start(() => ({ kind: "error", status: 500 }));
    const err = await client.chat.completions
      .create({ model: "m", messages: userMsg("hi") })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InternalServerError);
    expect((err as InternalServerError).status).toBe(500);
    expect((err as InternalServerError).type).toBe("server_error");
  });

  it("sends a custom error body as JSON", async () => {
    const { client } = await start(() => ({
      kind: "error",
      status: 400,
      body: { error: { message: "response_format is not supported", type: "x", code: null } },
    }));
    const err = await client.chat.completions
      .create({ model: "m", messages: userMsg("hi") })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).message).toContain("response_format is not supported");
  });

  it("makes the SDK throw on a malformed 200 body", async () => {
    const { client } = await start(() => ({ kind: "raw", status: 200, body: '{"id": "chatcmpl-' }));
    await expect(
      client.chat.completions.create({ model: "m", messages: userMsg("hi") }),
    ).rejects.toThrow();
  });
});

describe("fake OpenAI server: hanging requests", () => {
  it("lets an AbortSignal abort a hanging request, and close() still resolves quickly", async () => {
    const { fake, client } = await start(() => ({ kind: "hang" }));
    const controller = new AbortController();
    const pending = client.chat.completions
      .create({ model: "m", messages: userMsg("hi") }, { signal: controller.signal })
      .catch((e: unknown) => e);

    await vi.waitFor(() => expect(fake.chatRequests()).toHaveLength(1));
    controller.abort();
    expect(await pending).toBeInstanceOf(APIUserAbortError);

    const t0 = performance.now();
    await fake.close();
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it("close() resolves quickly while a request is still hanging", async () => {
    const { fake, client } = await start(() => ({ kind: "hang" }));
    const pending = client.chat.completions
      .create({ model: "m", messages: userMsg("hi") })
      .catch((e: unknown) => e);
    await vi.waitFor(() => expect(fake.chatRequests()).toHaveLength(1));

    const t0 = performance.now();
    await fake.close();
    await fake.close(); // idempotent
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(APIConnectionError);
  });

  it("close() cancels a pending delayed reply", async () => {
    const { fake, client } = await start(() => ({
      kind: "delay",
      ms: 60_000,
      reply: message("never"),
    }));
    const pending = client.chat.completions
      .create({ model: "m", messages: userMsg("hi") })
      .catch((e: unknown) => e);
    await vi.waitFor(() => expect(fake.chatRequests()).toHaveLength(1));
    const t0 = performance.now();
    await fake.close();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await pending).toBeInstanceOf(APIConnectionError);
  });
});

describe("fake OpenAI server: routes and recording", () => {
  it("records every request with method, path, headers and parsed body", async () => {
    const { fake, client } = await start(() => message("ok"));
    await client.chat.completions.create({ model: "gpt-rec", messages: userMsg("record me") });

    expect(fake.requests).toHaveLength(1);
    const req = fake.requests[0];
    expect(req?.method).toBe("POST");
    expect(req?.path).toBe("/v1/chat/completions");
    expect(req?.headers.authorization).toBe("Bearer sk-test");
    expect(req?.headers["content-type"]).toMatch(/^application\/json/);
    expect(req?.body).toEqual({ model: "gpt-rec", messages: userMsg("record me") });
  });

  it("answers GET /v1/models and 404s other paths, recording both", async () => {
    const { fake, client } = await start();
    const models = [];
    for await (const model of client.models.list()) models.push(model);
    expect(models.length).toBeGreaterThan(0);
    expect(models[0]).toMatchObject({ object: "model", id: expect.any(String) });

    const res = await fetch(`${fake.baseURL}/embeddings`, { method: "POST", body: "{}" });
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const json = (await res.json()) as { error: { message: string; type: string } };
    expect(json.error.type).toBe("invalid_request_error");

    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /v1/models",
      "POST /v1/embeddings",
    ]);
    expect(fake.chatRequests()).toEqual([]);
  });

  it("passes a 0-based chat index to the handler and supports setHandler", async () => {
    const seen: number[] = [];
    const { fake, client } = await start((_req, index) => {
      seen.push(index);
      return message(`first handler #${index}`);
    });
    const ask = async () =>
      (await client.chat.completions.create({ model: "m", messages: userMsg("hi") })).choices[0]
        ?.message.content;

    expect(await ask()).toBe("first handler #0");
    expect(await ask()).toBe("first handler #1");
    fake.setHandler((_req, index) => message(`second handler #${index}`));
    expect(await ask()).toBe("second handler #2");
    expect(seen).toEqual([0, 1]);
    expect(fake.chatRequests()).toHaveLength(3);
  });
});

describe("classify", () => {
  const schemaFormat = (name: string) => ({
    type: "json_schema",
    json_schema: { name, strict: true, schema: { type: "object" } },
  });

  it("classifies structured-output requests by schema name", () => {
    expect(classify(chatReq({ messages: [], response_format: schemaFormat("assessment") }))).toBe(
      "assess",
    );
    expect(classify(chatReq({ messages: [], response_format: schemaFormat("plan") }))).toBe("plan");
    expect(classify(chatReq({ messages: [], response_format: schemaFormat("other") }))).toBe(
      "unknown",
    );
  });

  it("classifies requests with non-empty tools as execute", () => {
    const tool = { type: "function", function: { name: "shell", parameters: {} } };
    expect(classify(chatReq({ messages: userMsg("go"), tools: [tool] }))).toBe("execute");
    expect(classify(chatReq({ messages: userMsg("go"), tools: [] }))).toBe("unknown");
  });

  it("classifies plain JSON fallback requests by marker and schema-name line", () => {
    const fallback = (system: string, user: string) =>
      chatReq({
        messages: [
          { role: "system", content: system },
          { role: "user", content: user },
        ],
      });
    expect(
      classify(fallback("You assess. Reply with JSON only.", "Goal: x\nSchema name: assessment\n")),
    ).toBe("assess");
    expect(classify(fallback("You plan.", "Reply with JSON only.\nSchema name: plan"))).toBe(
      "plan",
    );
    // Array content parts are read too.
    expect(
      classify(
        chatReq({
          messages: [
            {
              role: "user",
              content: [
                { type: "text", text: "Reply with JSON only" },
                { type: "text", text: "Schema name: plan" },
              ],
            },
          ],
        }),
      ),
    ).toBe("plan");
    // Marker missing.
    expect(classify(fallback("You assess.", "Schema name: assessment"))).toBe("unknown");
    // Schema name not on its own line.
    expect(classify(fallback("Reply with JSON only", "Use Schema name: assessment please"))).toBe(
      "unknown",
    );
    // Unknown schema name.
    expect(classify(fallback("Reply with JSON only", "Schema name: summary"))).toBe("unknown");
    // The schema line must be in the last user message.
    expect(
      classify(
        chatReq({
          messages: [
            { role: "system", content: "Reply with JSON only" },
            { role: "user", content: "Schema name: plan" },
            { role: "assistant", content: "{}" },
            { role: "user", content: "Try again." },
          ],
        }),
      ),
    ).toBe("unknown");
    // Marker in an assistant message does not count.
    expect(
      classify(
        chatReq({
          messages: [
            { role: "assistant", content: "Reply with JSON only" },
            { role: "user", content: "Schema name: plan" },
          ],
        }),
      ),
    ).toBe("unknown");
  });

  it("returns unknown for bodiless requests", () => {
    expect(classify(chatReq(undefined))).toBe("unknown");
    expect(classify(chatReq({ messages: userMsg("hello") }))).toBe("unknown");
  });
});

describe("scripted", () => {
  it("dispatches a whole tick through the real client with per-kind counters", async () => {
    const calls: string[] = [];
    const handler = scripted({
      assess: (n) => {
        calls.push(`assess ${n}`);
        return jsonMessage({
          goalComplete: n >= 2,
          actionNeeded: n < 2,
          assessment: `Assessment ${n}`,
          progressSummary: "p",
        });
      },
      execute: (n): Reply => {
        calls.push(`execute ${n}`);
        return n === 1
          ? toolCalls([{ name: "shell", arguments: { cmd: "ls" } }])
          : message("Done with the step.");
      },
    });
    const { client } = await start(handler);
    const tools = [
      {
        type: "function" as const,
        function: { name: "shell", parameters: { type: "object", properties: {} } },
      },
    ];
    const structured = (name: "assessment" | "plan") =>
      client.chat.completions.create({
        model: "m",
        messages: userMsg(`Please produce the ${name}.`),
        response_format: {
          type: "json_schema",
          json_schema: { name, schema: { type: "object" }, strict: true },
        },
      });
    const content = (r: OpenAI.Chat.ChatCompletion) => r.choices[0]?.message.content ?? "";

    expect(JSON.parse(content(await structured("assessment")))).toMatchObject({
      goalComplete: false,
      assessment: "Assessment 1",
    });
    // Plan falls back to the default.
    expect(JSON.parse(content(await structured("plan")))).toEqual({
      steps: ["Do the next thing"],
    });
    const exec1 = await client.chat.completions.create({
      model: "m",
      messages: userMsg("Do the next thing"),
      tools,
    });
    expect(exec1.choices[0]?.message.tool_calls?.[0]).toMatchObject({
      function: { name: "shell", arguments: '{"cmd":"ls"}' },
    });
    const exec2 = await client.chat.completions.create({
      model: "m",
      messages: userMsg("continue"),
      tools,
    });
    expect(content(exec2)).toBe("Done with the step.");

    // Plain fallback assessment (as after a server rejected response_format).
    const fallbackAssess = await client.chat.completions.create({
      model: "m",
      messages: [
        { role: "system", content: "You are an agent. Reply with JSON only." },
        { role: "user", content: "Goal: finish.\nSchema name: assessment" },
      ],
    });
    expect(JSON.parse(content(fallbackAssess))).toMatchObject({ goalComplete: true });

    // Unclassified requests get the fallback.
    const other = await client.chat.completions.create({ model: "m", messages: userMsg("hey") });
    expect(content(other)).toBe("OK");

    expect(calls).toEqual(["assess 1", "execute 1", "execute 2", "assess 2"]);
  });

  it("uses the documented defaults and a custom fallback", async () => {
    const fallbackSeen: number[] = [];
    const handler = scripted({
      fallback: (n) => {
        fallbackSeen.push(n);
        return message(`fallback ${n}`);
      },
    });
    const reply = async (body: unknown) => handler(chatReq(body), 0);

    expect(
      await reply({
        messages: [],
        response_format: { type: "json_schema", json_schema: { name: "assessment" } },
      }),
    ).toEqual(
      jsonMessage({
        goalComplete: false,
        actionNeeded: true,
        assessment: "Work remains.",
        progressSummary: "Some progress.",
      }),
    );
    expect(
      await reply({
        messages: [],
        response_format: { type: "json_schema", json_schema: { name: "plan" } },
      }),
    ).toEqual(jsonMessage({ steps: ["Do the next thing"] }));
    expect(await reply({ messages: [], tools: [{ type: "function" }] })).toEqual(
      message("Done for this tick."),
    );
    expect(await reply({ messages: userMsg("?") })).toEqual(message("fallback 1"));
    expect(await reply({ messages: userMsg("?") })).toEqual(message("fallback 2"));
    expect(fallbackSeen).toEqual([1, 2]);
  });
});
