/**
 * An OpenAI-compatible fake server for tests.
 *
 * It speaks the real Chat Completions wire format over real HTTP on `127.0.0.1` (port 0), so
 * the real `openai` client is exercised end to end: in-process from unit tests, or from a CLI
 * spawned as a child process and pointed at {@link FakeOpenAI.baseURL}.
 *
 * Routes:
 * - `POST /v1/chat/completions`: answered by the current {@link Handler}; `stream: true` gets a
 *   400 (streaming is not implemented), an unparseable JSON body gets a 400.
 * - `GET /v1/models`: a fixed model list.
 * - anything else: a 404 OpenAI error envelope.
 *
 * Every request, whatever its route, is recorded in {@link FakeOpenAI.requests}.
 *
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { ChatCompletion } from "openai/resources/chat/completions";
import type { Model } from "openai/resources/models";

/** One HTTP request received by the fake server. */
export interface RecordedRequest {
  /** HTTP method, upper case (`"POST"`, `"GET"`). */
  method: string;
  /** URL path without the query string, e.g. `/v1/chat/completions`. */
  path: string;
  /** Request headers as Node reports them (lower-cased names). */
  headers: Record<string, string | string[] | undefined>;
  /** The body parsed as JSON, or `undefined` when it was empty or not valid JSON. */
  // biome-ignore lint/suspicious/noExplicitAny: tests dig into arbitrary request bodies.
  body: any;
}

/** One tool call in a scripted assistant message. */
export interface ReplyToolCall {
  /** Tool call id; defaults to `call_<n>` from a per-server counter starting at 1. */
  id?: string;
  /** Function name. */
  name: string;
  /** Function arguments, already JSON-encoded as the wire format requires. */
  arguments: string;
  /**
   * Sent as `function.arguments` instead of `arguments`, as any JSON value: an object or a
   * number, as some servers wrongly send.
   */
  rawArguments?: unknown;
}

/** Token usage to report; `total_tokens` is computed. */
export interface ReplyUsage {
  prompt_tokens: number;
  completion_tokens: number;
  /** Sent as `prompt_tokens_details.cached_tokens` when given. */
  cached_tokens?: number;
}

/** What the fake server should answer to one chat completion request. */
export type Reply =
  | {
      kind: "message";
      /** Assistant text; `null` is typical alongside tool calls. */
      content: string | null;
      toolCalls?: ReplyToolCall[];
      /**
       * Usage to report. `undefined` means the default `{prompt_tokens: 10, completion_tokens: 5}`;
       * `null` omits the `usage` field from the JSON entirely.
       */
      usage?: ReplyUsage | null;
      /** Defaults to `"tool_calls"` when there are tool calls, else `"stop"`. */
      finishReason?: string;
      /** Defaults to the request's `model`, else {@link DEFAULT_MODEL}. */
      model?: string;
    }
  | {
      kind: "error";
      status: number;
      /**
       * JSON body (strings are sent verbatim). Default: the OpenAI error envelope
       * `{error: {message, type, code, param}}`.
       */
      body?: unknown;
      /** Extra response headers, e.g. `{"retry-after-ms": "10"}`. */
      headers?: Record<string, string>;
    }
  | {
      /** A verbatim response, e.g. a 200 with a malformed body. */
      kind: "raw";
      status: number;
      body: string;
      /** Response headers; `content-type` defaults to `application/json`. */
      headers?: Record<string, string>;
    }
  | {
      /** Never answers; the socket is closed when the client aborts or when the server closes. */
      kind: "hang";
    }
  | {
      /** Answers `reply` after `ms` milliseconds (unless the client or the server goes away first). */
      kind: "delay";
      ms: number;
      reply: Reply;
    }
  | {
      /**
       * Sends a 200 with JSON headers and the first `sentBytes` (default 20) bytes of a valid
       * completion, then stalls: the body never ends (until the client goes away).
       */
      kind: "stall";
      sentBytes?: number;
    }
  | {
      /**
       * A 200 whose JSON body is `bytes` long (a completion whose content is padding), streamed
       * in 64 KiB chunks as fast as the client reads. `declareLength` sends a `content-length`
       * header (default: chunked, no length). {@link FakeOpenAI.bytesSent} counts what went out.
       */
      kind: "huge";
      bytes: number;
      declareLength?: boolean;
    };

/**
 * Decides the reply to a chat completion request.
 *
 * @param req - The recorded request (already in {@link FakeOpenAI.requests}).
 * @param index - 0-based position of this request among all chat completion requests this server
 *   has received (including ones rejected for `stream: true`).
 */
export type Handler = (req: RecordedRequest, index: number) => Reply | Promise<Reply>;

/** A running fake server. */
export interface FakeOpenAI {
  /** Base URL to hand to the `openai` client, e.g. `http://127.0.0.1:PORT/v1`. */
  baseURL: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Only the `POST /v1/chat/completions` requests, in order. */
  chatRequests(): RecordedRequest[];
  /** Replaces the handler for subsequent chat completion requests. */
  setHandler(h: Handler): void;
  /** Closes the server and every socket, including hanging ones; idempotent, resolves promptly. */
  close(): Promise<void>;
  /** Body bytes written by `huge` and `stall` replies so far. */
  bytesSent(): number;
}

/** Model name reported when neither the reply nor the request names one. */
export const DEFAULT_MODEL = "gpt-4o-mini";

/** Usage reported when a message reply does not specify any. */
export const DEFAULT_USAGE: Readonly<ReplyUsage> = { prompt_tokens: 10, completion_tokens: 5 };

const CHAT_PATH = "/v1/chat/completions";
const MODELS_PATH = "/v1/models";

/** The OpenAI error envelope. */
interface ErrorEnvelope {
  error: { message: string; type: string; code: string | null; param: string | null };
}

function defaultErrorType(status: number): string {
  if (status === 401) return "invalid_request_error";
  if (status === 403) return "permission_denied";
  if (status === 404) return "invalid_request_error";
  if (status === 429) return "rate_limit_exceeded";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

function errorEnvelope(
  status: number,
  message?: string,
  type?: string,
  code?: string | null,
  param?: string | null,
): ErrorEnvelope {
  return {
    error: {
      message: message ?? `Fake OpenAI error (HTTP ${status})`,
      type: type ?? defaultErrorType(status),
      code: code ?? null,
      param: param ?? null,
    },
  };
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  if (res.destroyed || res.writableEnded) return;
  const lower: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v;
  lower["content-type"] ??= "application/json";
  lower["content-length"] = String(Buffer.byteLength(body));
  res.writeHead(status, lower);
  res.end(body);
}

function sendJSON(
  res: ServerResponse,
  status: number,
  value: unknown,
  headers?: Record<string, string>,
): void {
  send(res, status, JSON.stringify(value), headers);
}

function sendError(res: ServerResponse, status: number, message: string, code?: string): void {
  sendJSON(res, status, errorEnvelope(status, message, undefined, code));
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/**
 * Starts a fake OpenAI server on `127.0.0.1` with an ephemeral port.
 *
 * @param handler - Decides chat completion replies; defaults to `scripted({})`, a plausible
 *   assess/plan/execute conversation that never completes the goal.
 */
export async function startFakeOpenAI(handler?: Handler): Promise<FakeOpenAI> {
  let current: Handler = handler ?? scripted({});
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let chatIndex = 0;
  let bytesSent = 0;
  let completionCounter = 0;
  let toolCallCounter = 0;
  let closing: Promise<void> | undefined;

  const completionBody = (
    reply: Extract<Reply, { kind: "message" }>,
    req: RecordedRequest,
  ): ChatCompletion => {
    completionCounter += 1;
    const calls = reply.toolCalls ?? [];
    const message: ChatCompletion.Choice["message"] = {
      role: "assistant",
      content: reply.content,
      refusal: null,
    };
    if (calls.length > 0) {
      message.tool_calls = calls.map((c) => {
        toolCallCounter += 1;
        return {
          id: c.id ?? `call_${toolCallCounter}`,
          type: "function",
          function: {
            name: c.name,
            // A deliberately wrong wire format when set (see ReplyToolCall.rawArguments).
            arguments: (c.rawArguments === undefined ? c.arguments : c.rawArguments) as string,
          },
        };
      });
    }
    const requestedModel: unknown = req.body?.model;
    const body: ChatCompletion = {
      id: `chatcmpl-fake${completionCounter}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: reply.model ?? (typeof requestedModel === "string" ? requestedModel : DEFAULT_MODEL),
      choices: [
        {
          index: 0,
          message,
          // The SDK types list the known reasons; tests may script others on purpose.
          finish_reason: (reply.finishReason ??
            (calls.length > 0 ? "tool_calls" : "stop")) as ChatCompletion.Choice["finish_reason"],
          logprobs: null,
        },
      ],
    };
    if (reply.usage !== null) {
      const u = reply.usage ?? DEFAULT_USAGE;
      body.usage = {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        ...(u.cached_tokens !== undefined
          ? { prompt_tokens_details: { cached_tokens: u.cached_tokens } }
          : {}),
      };
    }
    return body;
  };

  const respond = (reply: Reply, req: RecordedRequest, res: ServerResponse): void => {
    if (res.destroyed || res.writableEnded || closing) return;
    switch (reply.kind) {
      case "message":
        sendJSON(res, 200, completionBody(reply, req));
        return;
      case "error": {
        const body = reply.body === undefined ? errorEnvelope(reply.status) : reply.body;
        send(
          res,
          reply.status,
          typeof body === "string" ? body : JSON.stringify(body),
          reply.headers,
        );
        return;
      }
      case "raw":
        send(res, reply.status, reply.body, reply.headers);
        return;
      case "hang":
        return;
      case "stall": {
        const text = JSON.stringify(completionBody({ kind: "message", content: "stalled" }, req));
        const part = Buffer.from(text).subarray(0, reply.sentBytes ?? 20);
        res.writeHead(200, { "content-type": "application/json" });
        res.write(part);
        bytesSent += part.length;
        return;
      }
      case "huge": {
        const head = Buffer.from(
          '{"id":"chatcmpl-huge","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"',
        );
        const tail = Buffer.from('"}}]}');
        const padding = Math.max(0, reply.bytes - head.length - tail.length);
        const chunk = Buffer.alloc(64 * 1024, "a");
        res.writeHead(200, {
          "content-type": "application/json",
          ...(reply.declareLength
            ? { "content-length": String(head.length + padding + tail.length) }
            : {}),
        });
        let left = padding;
        const pump = (): void => {
          if (res.destroyed || closing) return;
          while (left > 0) {
            const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
            left -= piece.length;
            bytesSent += piece.length;
            if (!res.write(piece)) {
              res.once("drain", pump);
              return;
            }
          }
          bytesSent += tail.length;
          res.end(tail);
        };
        bytesSent += head.length;
        res.write(head);
        pump();
        return;
      }
      case "delay": {
        let timer: NodeJS.Timeout | undefined;
        const cancel = (): void => {
          if (timer === undefined) return;
          clearTimeout(timer);
          timers.delete(timer);
        };
        timer = setTimeout(() => {
          cancel();
          res.off("close", cancel);
          respond(reply.reply, req, res);
        }, reply.ms);
        timers.add(timer);
        res.once("close", cancel);
        return;
      }
    }
  };

  const handleChat = async (recorded: RecordedRequest, res: ServerResponse): Promise<void> => {
    const index = chatIndex;
    chatIndex += 1;
    if (recorded.body === undefined || typeof recorded.body !== "object") {
      sendError(res, 400, "Fake OpenAI: request body must be a JSON object.");
      return;
    }
    if (recorded.body.stream === true) {
      sendError(res, 400, "Fake OpenAI: streaming is not supported.", "unsupported_value");
      return;
    }
    let reply: Reply;
    try {
      reply = await current(recorded, index);
    } catch (err) {
      const text = err instanceof Error ? err.message : String(err);
      sendError(res, 500, `Fake OpenAI handler threw: ${text}`);
      return;
    }
    respond(reply, recorded, res);
  };

  const server = createServer((req, res) => {
    void (async () => {
      const raw = await readBody(req);
      let body: unknown;
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw);
        } catch {
          body = undefined;
        }
      }
      const method = (req.method ?? "GET").toUpperCase();
      const path = new URL(req.url ?? "/", "http://127.0.0.1").pathname;
      const recorded: RecordedRequest = { method, path, headers: { ...req.headers }, body };
      requests.push(recorded);

      if (method === "POST" && path === CHAT_PATH) {
        await handleChat(recorded, res);
      } else if (method === "GET" && path === MODELS_PATH) {
        const created = Math.floor(Date.now() / 1000);
        const data: Model[] = [DEFAULT_MODEL, "gpt-4o"].map((id) => ({
          id,
          object: "model",
          created,
          owned_by: "fake-openai",
        }));
        sendJSON(res, 200, { object: "list", data });
      } else {
        sendError(res, 404, `Fake OpenAI: no route for ${method} ${path}.`, "unknown_url");
      }
    })().catch((err: unknown) => {
      const text = err instanceof Error ? err.message : String(err);
      sendError(res, 500, `Fake OpenAI internal error: ${text}`);
    });
  });

  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    chatRequests: () => requests.filter((r) => r.method === "POST" && r.path === CHAT_PATH),
    setHandler: (h) => {
      current = h;
    },
    bytesSent: () => bytesSent,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Reply helpers
// ---------------------------------------------------------------------------------------------

/** Options shared by the message helpers. */
export interface MessageOptions {
  /** See the `usage` field of a message {@link Reply}; `null` omits usage. */
  usage?: ReplyUsage | null;
  finishReason?: string;
  model?: string;
}

/** A plain assistant message reply. */
export function message(content: string | null, opts: MessageOptions = {}): Reply {
  return { kind: "message", content, ...opts };
}

/** An assistant message whose content is `JSON.stringify(obj)`. */
export function jsonMessage(obj: unknown, opts: MessageOptions = {}): Reply {
  return message(JSON.stringify(obj), opts);
}

/** A tool call to script; object arguments are JSON-encoded. */
export interface ToolCallSpec {
  id?: string;
  name: string;
  arguments: object | string;
}

/**
 * An assistant message carrying tool calls (finish reason `tool_calls` unless overridden).
 *
 * @param calls - The calls; `arguments` objects are JSON-encoded, strings are sent as-is.
 * @param opts - Message options plus optional `content` (default `null`).
 */
export function toolCalls(
  calls: Array<ToolCallSpec & { rawArguments?: unknown }>,
  opts: MessageOptions & { content?: string | null } = {},
): Reply {
  const { content = null, ...rest } = opts;
  return {
    kind: "message",
    content,
    toolCalls: calls.map((c) => ({
      ...(c.id === undefined ? {} : { id: c.id }),
      name: c.name,
      arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments),
      ...(c.rawArguments === undefined ? {} : { rawArguments: c.rawArguments }),
    })),
    ...rest,
  };
}

/** Options for {@link errorReply}. */
export interface ErrorReplyOptions {
  message?: string;
  type?: string;
  code?: string | null;
  param?: string | null;
  /** Extra response headers, e.g. `{"retry-after-ms": "10"}`. */
  headers?: Record<string, string>;
}

/** An HTTP error reply with the OpenAI error envelope `{error: {message, type, code, param}}`. */
export function errorReply(status: number, opts: ErrorReplyOptions = {}): Reply {
  const reply: Reply = {
    kind: "error",
    status,
    body: errorEnvelope(status, opts.message, opts.type, opts.code, opts.param),
  };
  if (opts.headers) reply.headers = opts.headers;
  return reply;
}

// ---------------------------------------------------------------------------------------------
// Conversation scripting
// ---------------------------------------------------------------------------------------------

/** The kind of agent request, as decided by {@link classify}. */
export type RequestKind = "assess" | "plan" | "execute" | "unknown";

/** Marker the product puts in a system or user message when it falls back to plain JSON. */
export const JSON_ONLY_MARKER = "Reply with JSON only";

const SCHEMA_LINE = /^[ \t]*Schema name:[ \t]*(assessment|plan)[ \t]*$/m;

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown) =>
        part !== null &&
        typeof part === "object" &&
        "text" in part &&
        typeof (part as { text: unknown }).text === "string"
          ? (part as { text: string }).text
          : "",
      )
      .join("\n");
  }
  return "";
}

function schemaKind(name: unknown): RequestKind | undefined {
  if (name === "assessment") return "assess";
  if (name === "plan") return "plan";
  return undefined;
}

/**
 * Classifies a chat completion request from the product:
 * 1. `response_format: {type: "json_schema", json_schema: {name: "assessment" | "plan"}}` →
 *    `assess` / `plan`;
 * 2. a non-empty `tools` array → `execute`;
 * 3. plain fallback: some system or user message contains {@link JSON_ONLY_MARKER} and the last
 *    user message has a line `Schema name: assessment` / `Schema name: plan` → `assess` / `plan`;
 * 4. otherwise `unknown`.
 */
export function classify(req: RecordedRequest): RequestKind {
  const body: unknown = req.body;
  if (body === null || typeof body !== "object") return "unknown";
  const b = body as { response_format?: unknown; tools?: unknown; messages?: unknown };

  const rf = b.response_format as { type?: unknown; json_schema?: { name?: unknown } } | undefined;
  if (rf && typeof rf === "object" && rf.type === "json_schema") {
    const kind = schemaKind(rf.json_schema?.name);
    if (kind) return kind;
  }

  if (Array.isArray(b.tools) && b.tools.length > 0) return "execute";

  const messages = Array.isArray(b.messages)
    ? (b.messages as unknown[]).filter(
        (m): m is { role?: unknown; content?: unknown } => m !== null && typeof m === "object",
      )
    : [];
  const hasMarker = messages.some(
    (m) =>
      (m.role === "system" || m.role === "user") && textOf(m.content).includes(JSON_ONLY_MARKER),
  );
  if (!hasMarker) return "unknown";
  const lastUser = messages.filter((m) => m.role === "user").at(-1);
  if (!lastUser) return "unknown";
  const match = SCHEMA_LINE.exec(textOf(lastUser.content));
  return schemaKind(match?.[1]) ?? "unknown";
}

/** Produces the reply for the n-th (1-based) request of one kind. */
export type ScriptStep = (n: number, req: RecordedRequest) => Reply | Promise<Reply>;

/** Per-kind reply functions for {@link scripted}. */
export interface Script {
  assess?: ScriptStep;
  plan?: ScriptStep;
  execute?: ScriptStep;
  /** For `unknown` requests; default `message("OK")`. */
  fallback?: ScriptStep;
}

/** The default assessment: work remains and action is needed. */
export const DEFAULT_ASSESSMENT = {
  goalComplete: false,
  actionNeeded: true,
  assessment: "Work remains.",
  progressSummary: "Some progress.",
} as const;

/** The default plan. */
export const DEFAULT_PLAN = { steps: ["Do the next thing"] } as const;

/**
 * A {@link Handler} that dispatches by {@link classify}, passing each kind its own 1-based call
 * counter. Missing kinds default to: assess → {@link DEFAULT_ASSESSMENT}, plan →
 * {@link DEFAULT_PLAN}, execute → `message("Done for this tick.")`, unknown → `message("OK")`.
 */
export function scripted(script: Script): Handler {
  const counts: Record<RequestKind, number> = { assess: 0, plan: 0, execute: 0, unknown: 0 };
  const steps: Record<RequestKind, ScriptStep> = {
    assess: script.assess ?? (() => jsonMessage(DEFAULT_ASSESSMENT)),
    plan: script.plan ?? (() => jsonMessage(DEFAULT_PLAN)),
    execute: script.execute ?? (() => message("Done for this tick.")),
    unknown: script.fallback ?? (() => message("OK")),
  };
  return (req) => {
    const kind = classify(req);
    counts[kind] += 1;
    return steps[kind](counts[kind], req);
  };
}
