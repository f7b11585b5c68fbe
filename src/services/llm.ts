/**
 * Thin adapter over the `openai` SDK for any OpenAI-compatible endpoint.
 * Structured outputs are validated with zod at the boundary, and every
 * request takes the caller's AbortSignal. Every answered call is charged,
 * also when its reply cannot be used (the usage travels on the error); a reply
 * without `usage` is charged an estimate (prompt and reply characters / 4),
 * marked `estimatedCalls`. Retries are the SDK's (one retry layer); the SDK's
 * timeout ends at the response headers, so {@link boundedFetch} bounds the
 * whole response (headers and body) in time and size. This module also tells
 * the SDK not to retry what cannot succeed (no quota, a `retry-after` beyond a
 * minute), shrinks a prompt that overflowed the context window once, and
 * tells a server that was never reached (fatal: a wrong URL) from one that
 * went away (a failed tick).
 */
import OpenAI from "openai";
import { z } from "zod";
import { LlmError } from "../errors.js";
import type {
  AssessInput,
  AssessOutput,
  PlanInput,
  PlanOutput,
  TokenUsage,
} from "../machines/heartbeat.types.js";
import { PROGRESS_LIMIT } from "../machines/shared.js";
import type {
  CallModelInput,
  CallModelOutput,
  ToolCallRequest,
} from "../machines/toolLoop.types.js";
import { AssessmentSchema, MAX_PLAN_STEPS, PlanSchema } from "../schemas/llm.js";
import { parseDuration } from "./duration.js";
import {
  assessPrompt,
  executePrompt,
  jsonOnlyInstruction,
  LAST_CALL_NOTE,
  planPrompt,
  SYSTEM_PROMPT,
  shrinkAssessInput,
  shrinkCallInput,
  shrinkPlanInput,
} from "./prompts.js";

type ChatMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam;
type ChatTool = OpenAI.Chat.Completions.ChatCompletionTool;

/** Settings of the model client. */
export interface LlmSettings {
  baseURL: string;
  apiKey: string | undefined;
  model: string;
  /** Per-request timeout, milliseconds. */
  timeoutMs: number;
  /** SDK retries for connection errors, 408, 409, 429 and 5xx. */
  maxRetries: number;
}

/** The longest `retry-after` the SDK is let to wait; a longer one fails the tick instead. */
export const MAX_RETRY_AFTER_MS = 60_000;

/** The wait a response asks for (`retry-after-ms`, `retry-after` in seconds or as a date), if any. */
export function retryAfterMs(headers: Headers, now: number = Date.now()): number | null {
  const ms = Number.parseFloat(headers.get("retry-after-ms") ?? "");
  if (!Number.isNaN(ms)) return ms;
  const raw = headers.get("retry-after");
  if (!raw) return null;
  const seconds = Number.parseFloat(raw);
  if (!Number.isNaN(seconds)) return seconds * 1000;
  const date = Date.parse(raw);
  return Number.isNaN(date) ? null : date - now;
}

/**
 * Wraps `fetch` so that the SDK does not retry what cannot succeed: a 429
 * `insufficient_quota` (fatal at once) and a wait beyond
 * {@link MAX_RETRY_AFTER_MS} (the tick fails; the heartbeat backs off). It
 * marks such responses `x-should-retry: false`, which the SDK obeys.
 */
export function guardedFetch(base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const response = await base(input, init);
    if (response.status !== 429 && response.status < 500) return response;
    const wait = retryAfterMs(response.headers);
    let hopeless = wait !== null && wait > MAX_RETRY_AFTER_MS;
    if (!hopeless && response.status === 429) {
      const text = await response
        .clone()
        .text()
        .catch(() => "");
      hopeless = text.includes("insufficient_quota");
    }
    if (!hopeless) return response;
    const headers = new Headers(response.headers);
    headers.set("x-should-retry", "false");
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  };
}

/** The largest response body read from the model server, in bytes; a larger one fails the tick. */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** The whole response (headers and body) did not arrive within the request timeout. */
export class ResponseTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`the response did not arrive in full within ${timeoutMs / 1000} s`);
    this.name = "ResponseTimeoutError";
  }
}

/** The response body is larger than the cap. */
export class ResponseTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`the response body exceeds ${Math.round(maxBytes / (1024 * 1024))} MB`);
    this.name = "ResponseTooLargeError";
  }
}

/**
 * Wraps `fetch` so that one request, headers and body together, ends within
 * `timeoutMs` and reads at most `maxBytes` of body. The SDK's own timeout
 * stops at the headers: a server that sends them and then stalls the body
 * would otherwise hang the run for good, and an endless body would fill the
 * memory. Past the deadline or the cap the connection is dropped and the body
 * errors with {@link ResponseTimeoutError} or {@link ResponseTooLargeError};
 * a deadline before the headers aborts the fetch, which the SDK reports as
 * its own timeout.
 */
export function boundedFetch(
  limits: { timeoutMs: number; maxBytes?: number },
  base: typeof fetch = fetch,
): typeof fetch {
  const maxBytes = limits.maxBytes ?? MAX_RESPONSE_BYTES;
  return async (input, init) => {
    const deadline = new AbortController();
    let failure: Error | null = null;
    let headersIn = false;
    const stop = (error: Error) => {
      failure ??= error;
      clearTimeout(timer);
      deadline.abort(
        headersIn ? failure : new DOMException("The model request timed out.", "AbortError"),
      );
    };
    const timer = setTimeout(
      () => stop(new ResponseTimeoutError(limits.timeoutMs)),
      limits.timeoutMs,
    );
    const signal = init?.signal ? AbortSignal.any([init.signal, deadline.signal]) : deadline.signal;
    let response: Response;
    try {
      response = await base(input, { ...init, signal });
    } catch (error) {
      clearTimeout(timer);
      throw error;
    }
    headersIn = true;
    const source = response.body;
    if (!source) {
      clearTimeout(timer);
      return response;
    }
    const declared = Number(response.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > maxBytes) stop(new ResponseTooLargeError(maxBytes));
    const reader = source.getReader();
    let received = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (failure) {
          controller.error(failure);
          return;
        }
        try {
          const { done, value } = await reader.read();
          if (done) {
            clearTimeout(timer);
            controller.close();
            return;
          }
          received += value.byteLength;
          if (received > maxBytes) {
            stop(new ResponseTooLargeError(maxBytes));
            reader.cancel().catch(() => {});
            controller.error(failure);
            return;
          }
          controller.enqueue(value);
        } catch (error) {
          clearTimeout(timer);
          controller.error(failure ?? error);
        }
      },
      cancel(reason) {
        clearTimeout(timer);
        return reader.cancel(reason);
      },
    });
    return new Response(body, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}

/** Creates the SDK client. Local servers need no key; a placeholder is sent then. */
export function createOpenAIClient(settings: LlmSettings): OpenAI {
  return new OpenAI({
    baseURL: settings.baseURL,
    apiKey: settings.apiKey || "not-needed",
    timeout: settings.timeoutMs,
    maxRetries: settings.maxRetries,
    fetch: guardedFetch(boundedFetch({ timeoutMs: settings.timeoutMs })),
  });
}

/** A 400 that says the prompt does not fit the model's context window. */
export function isContextLengthError(error: unknown): boolean {
  if (!(error instanceof OpenAI.APIError)) return false;
  if (error.status !== 400 && error.status !== 413) return false;
  const code = (error as { code?: string | null }).code;
  return (
    code === "context_length_exceeded" ||
    /context[_ ]length[_ ]exceeded|maximum context length|context window/i.test(error.message)
  );
}

/**
 * Settles with `promise`, or rejects with an `aborted` error as soon as
 * `signal` aborts, even while the SDK sleeps between retries.
 */
function withAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  const aborted = () => new LlmError("aborted", "The model request was aborted.");
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(aborted());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => {});
      reject(aborted());
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** The checklist changes of an assessment, bounded; added tasks with a period that is not a duration are dropped. */
function checklistUpdateOf(update: {
  done: string[];
  add: Array<{ every: string; task: string }>;
}) {
  return {
    done: update.done
      .map((t) => t.trim().slice(0, 500))
      .filter(Boolean)
      .slice(0, 50),
    add: update.add
      .map((a) => ({ task: a.task.trim().slice(0, 500), everySec: parseDuration(a.every) ?? 0 }))
      .filter((a) => a.task && a.everySec >= 60)
      .slice(0, 10),
  };
}

/** A JSON schema without `default` keywords (strict structured outputs refuse them). */
function withoutDefaults(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutDefaults);
  if (typeof schema !== "object" || schema === null) return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key !== "default") out[key] = withoutDefaults(value);
  }
  return out;
}

/** Characters per token in the estimate charged for a reply without `usage`. */
export const CHARS_PER_TOKEN = 4;

const count = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isFinite(value) && value >= 0 ? Math.round(value) : undefined;

/**
 * The usage of one answered call: the server's `usage`, or when it sent none
 * (several local servers do not) an estimate from the characters sent and
 * received, {@link CHARS_PER_TOKEN} to a token, marked `estimatedCalls: 1`.
 */
export function usageOf(
  usage: OpenAI.CompletionUsage | undefined | null,
  chars: { prompt: number; completion: number } = { prompt: 0, completion: 0 },
): TokenUsage {
  const prompt = count(usage?.prompt_tokens);
  const completion = count(usage?.completion_tokens);
  const total = count(usage?.total_tokens);
  const cached = count(usage?.prompt_tokens_details?.cached_tokens);
  if (prompt !== undefined || completion !== undefined || total !== undefined) {
    return {
      calls: 1,
      promptTokens: prompt ?? 0,
      completionTokens: completion ?? 0,
      totalTokens: total ?? (prompt ?? 0) + (completion ?? 0),
      ...(cached ? { cachedTokens: Math.min(cached, prompt ?? cached) } : {}),
    };
  }
  const promptTokens = Math.ceil(chars.prompt / CHARS_PER_TOKEN);
  const completionTokens = Math.ceil(chars.completion / CHARS_PER_TOKEN);
  return {
    calls: 1,
    promptTokens,
    completionTokens,
    totalTokens: promptTokens + completionTokens,
    estimatedCalls: 1,
  };
}

/** Characters of a request's prompt: the messages' text, the tool definitions and the response schema. */
export function promptChars(
  body: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming,
): number {
  let chars = 0;
  for (const message of body.messages) {
    const content = (message as { content?: unknown }).content;
    if (typeof content === "string") chars += content.length;
    else if (content !== undefined && content !== null) chars += JSON.stringify(content).length;
    for (const call of (message as { tool_calls?: unknown[] }).tool_calls ?? []) {
      chars += JSON.stringify(call).length;
    }
  }
  if (body.tools) chars += JSON.stringify(body.tools).length;
  if (body.response_format) chars += JSON.stringify(body.response_format).length;
  return chars;
}

/** Characters of a reply (its text and tool calls; the whole body when it is not a completion). */
export function completionChars(response: unknown): number {
  if (typeof response === "string") return response.length;
  const message = (response as { choices?: Array<{ message?: unknown }> } | null)?.choices?.[0]
    ?.message as { content?: unknown; tool_calls?: unknown } | undefined;
  if (!message) return JSON.stringify(response ?? "").length;
  const content = typeof message.content === "string" ? message.content.length : 0;
  return content + (message.tool_calls ? JSON.stringify(message.tool_calls).length : 0);
}

/**
 * Finds the JSON object in a model's text reply: the whole text, a fenced
 * block, or the first balanced `{…}`.
 */
export function extractJson(text: string): unknown {
  const trimmed = text.trim();
  const candidates: string[] = [trimmed];
  const fence = /```(?:json)?\s*([\s\S]*?)```/i.exec(trimmed);
  if (fence?.[1]) candidates.push(fence[1].trim());
  const start = trimmed.indexOf("{");
  if (start >= 0) {
    let depth = 0;
    let inString = false;
    let escaped = false;
    for (let i = start; i < trimmed.length; i++) {
      const ch = trimmed[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (ch === "\\") escaped = true;
        else if (ch === '"') inString = false;
      } else if (ch === '"') inString = true;
      else if (ch === "{") depth++;
      else if (ch === "}" && --depth === 0) {
        candidates.push(trimmed.slice(start, i + 1));
        break;
      }
    }
  }
  for (const candidate of candidates) {
    try {
      return JSON.parse(candidate);
    } catch {
      // try the next candidate
    }
  }
  throw new Error("no JSON object found in the reply");
}

/** Maps an SDK error onto an {@link LlmError} that says what to fix. */
export function toLlmError(
  error: unknown,
  settings: Pick<LlmSettings, "baseURL" | "model">,
  /** This process has had an answer from the server before: a lost connection is then transient. */
  reachedBefore = false,
): LlmError {
  if (error instanceof LlmError) return error;
  const bodyFailure = [error, (error as { cause?: unknown } | null)?.cause].find(
    (e) => e instanceof ResponseTimeoutError || e instanceof ResponseTooLargeError,
  );
  if (bodyFailure instanceof ResponseTimeoutError) {
    return new LlmError(
      "timeout",
      `The model request to ${settings.baseURL} timed out: ${bodyFailure.message}.`,
      {
        cause: error,
        hint: "The server sent its headers but not the whole reply in time. Raise --request-timeout, or check the server.",
      },
    );
  }
  if (bodyFailure instanceof ResponseTooLargeError) {
    return new LlmError(
      "too-large",
      `The model server at ${settings.baseURL} sent a reply too large to read: ${bodyFailure.message}; it was cut off.`,
      { cause: error, hint: "Check the server: a chat completion is far smaller than this." },
    );
  }
  if (error instanceof OpenAI.APIUserAbortError) {
    return new LlmError("aborted", "The model request was aborted.", { cause: error });
  }
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new LlmError("timeout", `The model request to ${settings.baseURL} timed out.`, {
      cause: error,
      hint: "Raise --request-timeout, or check the server's load.",
    });
  }
  if (error instanceof OpenAI.APIConnectionError && reachedBefore) {
    return new LlmError(
      "connection",
      `Lost the connection to the model server at ${settings.baseURL}: ${error.message}`,
      {
        cause: error,
        hint: "The server answered before; the tick will be retried. Check the server if it persists.",
      },
    );
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return new LlmError(
      "unreachable",
      `Cannot reach the model server at ${settings.baseURL}: ${error.message}`,
      {
        cause: error,
        hint: "Is the server running? Check --base-url (OpenAI-compatible servers usually end in /v1).",
      },
    );
  }
  if (isContextLengthError(error)) {
    return new LlmError(
      "context-length",
      `The prompt does not fit model "${settings.model}"'s context window, even shrunk: ${(error as Error).message}`,
      {
        cause: error,
        status: 400,
        hint: "Use a model with a larger context window, or a shorter goal.",
      },
    );
  }
  if (error instanceof OpenAI.APIError) {
    const status = error.status;
    const detail = error.message;
    const code = (error as { code?: string | null }).code ?? undefined;
    if (status === 401) {
      return new LlmError("auth", `The model server rejected the API key (401): ${detail}`, {
        cause: error,
        status,
        hint: "Set a valid key with --api-key or OPENAI_API_KEY.",
      });
    }
    if (status === 403) {
      return new LlmError("forbidden", `The model server refused access (403): ${detail}`, {
        cause: error,
        status,
        hint: "Check that the API key may use this model and endpoint.",
      });
    }
    if (status === 404) {
      return new LlmError(
        "model-not-found",
        `Model "${settings.model}" or the endpoint was not found (404): ${detail}`,
        {
          cause: error,
          status,
          hint: "Check --model and --base-url (OpenAI-compatible servers usually end in /v1).",
        },
      );
    }
    if (status === 429) {
      if (code === "insufficient_quota") {
        return new LlmError(
          "quota",
          `The account is out of quota (429 insufficient_quota): ${detail}`,
          {
            cause: error,
            status,
            hint: "Add credit or raise the quota with the provider, then resume with --id.",
          },
        );
      }
      return new LlmError("rate-limited", `Rate limited by the model server (429): ${detail}`, {
        cause: error,
        status,
      });
    }
    if (status !== undefined && status >= 500) {
      return new LlmError("server", `The model server failed (${status}): ${detail}`, {
        cause: error,
        status,
      });
    }
    return new LlmError(
      "bad-request",
      `The model server refused the request (${status}): ${detail}`,
      {
        cause: error,
        status,
      },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new LlmError(
    "bad-output",
    `The model server sent a reply that could not be read: ${message}`,
    {
      cause: error,
    },
  );
}

/** The text of a reply's first choice ("" when there is none). */
function replyText(response: OpenAI.Chat.Completions.ChatCompletion): string {
  const content = (response as { choices?: Array<{ message?: { content?: unknown } }> } | null)
    ?.choices?.[0]?.message?.content;
  return typeof content === "string" ? content : "";
}

/**
 * A tool call as the model sent it. Arguments that are not a string (some
 * servers send a JSON object, or a number) are kept as JSON text for the
 * transcript and marked, so the call is answered `invalid` rather than run.
 */
function toolCallOf(
  call: OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall,
  fallbackId: string,
): ToolCallRequest {
  const fn = (call.function ?? {}) as { name?: unknown; arguments?: unknown };
  const id = typeof call.id === "string" && call.id !== "" ? call.id : fallbackId;
  const name = typeof fn.name === "string" ? fn.name : String(fn.name ?? "");
  const raw = fn.arguments;
  if (typeof raw === "string" || raw === undefined || raw === null) {
    return { id, name, arguments: raw ?? "" };
  }
  const kind = Array.isArray(raw)
    ? "an array"
    : typeof raw === "object"
      ? "an object"
      : `a ${typeof raw}`;
  return {
    id,
    name,
    arguments: JSON.stringify(raw) ?? String(raw),
    argumentsError: `the arguments were sent as ${kind}, not as a string of JSON text`,
  };
}

/** A 4xx that means "this server does not do `response_format` JSON schemas". */
function rejectsStructuredOutput(error: unknown): boolean {
  if (!(error instanceof OpenAI.APIError)) return false;
  if (error.status !== 400 && error.status !== 422 && error.status !== 501) return false;
  return /response_format|json_schema|structured|schema/i.test(error.message);
}

/** Longest `attention` text kept from an assessment (it becomes a notification). */
export const ATTENTION_LIMIT = 500;

/**
 * The model, as the heartbeat's phases use it.
 */
export class LlmService {
  /** Set once the server has rejected `response_format`: later calls go straight to text mode. */
  private textMode = false;
  /** Set once the server has answered at all (even with an error). */
  private reached = false;

  constructor(
    private readonly client: OpenAI,
    private readonly settings: Pick<LlmSettings, "baseURL" | "model">,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** The assess phase: one call, structured output. */
  async assess(input: AssessInput, signal?: AbortSignal): Promise<AssessOutput> {
    const { value, usage } = await this.shrinkingOnce(
      (shrunk) =>
        this.structured(
          "assessment",
          AssessmentSchema,
          assessPrompt(shrunk ? shrinkAssessInput(input) : input, this.clock()),
          signal,
        ),
      signal,
    );
    const { attention: said, checklist, ...rest } = value;
    const attention = said?.trim().slice(0, ATTENTION_LIMIT);

    return {
      assessment: {
        ...rest,
        assessment: value.assessment.slice(0, 2000),
        progressSummary: value.progressSummary.slice(0, PROGRESS_LIMIT),
        // Only present when the model flagged something: an ordinary tick's assessment is unchanged.
        ...(attention ? { attention } : {}),
        ...(checklist ? { checklist: checklistUpdateOf(checklist) } : {}),
      },
      usage,
    };
  }

  /** The plan phase: one call, structured output. */
  async plan(input: PlanInput, signal?: AbortSignal): Promise<PlanOutput> {
    const { value, usage } = await this.shrinkingOnce(
      (shrunk) =>
        this.structured(
          "plan",
          PlanSchema,
          planPrompt(shrunk ? shrinkPlanInput(input) : input),
          signal,
        ),
      signal,
    );
    const steps = value.steps
      .map((s) => s.trim())
      .filter(Boolean)
      .slice(0, MAX_PLAN_STEPS);
    return { plan: { steps }, usage };
  }

  /** One model call of the execute phase's tool loop. */
  callWithTools(
    input: CallModelInput,
    tools: ChatTool[],
    signal?: AbortSignal,
  ): Promise<CallModelOutput> {
    return this.shrinkingOnce(
      (shrunk) => this.toolCall(shrunk ? shrinkCallInput(input) : input, tools, signal),
      signal,
    );
  }

  /**
   * Runs `attempt`; when the prompt overflowed the context window, once more
   * with the shrunk prompt. Errors come out as {@link LlmError}s.
   */
  private async shrinkingOnce<T>(
    attempt: (shrunk: boolean) => Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    try {
      try {
        return await attempt(false);
      } catch (error) {
        if (!isContextLengthError(error) || signal?.aborted) throw error;
        return await attempt(true);
      }
    } catch (error) {
      throw toLlmError(error, this.settings, this.reached);
    }
  }

  /** One chat completion; abortable at once, even between the SDK's retries. */
  private async complete(
    body: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming,
    signal: AbortSignal | undefined,
  ): Promise<OpenAI.Chat.Completions.ChatCompletion> {
    try {
      const response = await withAbort(
        this.client.chat.completions.create(body, signal ? { signal } : {}),
        signal,
      );
      this.reached = true;
      return response;
    } catch (error) {
      // Any answer, even an error or an unreadable body, shows the server is there.
      if (
        !(error instanceof OpenAI.APIConnectionError) &&
        !(error instanceof OpenAI.APIUserAbortError) &&
        !(error instanceof LlmError)
      )
        this.reached = true;
      throw error;
    }
  }

  private async toolCall(
    input: CallModelInput,
    tools: ChatTool[],
    signal: AbortSignal | undefined,
  ): Promise<CallModelOutput> {
    const messages: ChatMessage[] = [
      { role: "system", content: SYSTEM_PROMPT },
      { role: "user", content: executePrompt(input) },
    ];
    for (const entry of input.transcript) {
      if (entry.role === "assistant") {
        messages.push({
          role: "assistant",
          content: entry.content,
          ...(entry.toolCalls.length > 0
            ? {
                tool_calls: entry.toolCalls.map((c) => ({
                  id: c.id,
                  type: "function" as const,
                  function: { name: c.name, arguments: c.arguments },
                })),
              }
            : {}),
        });
      } else {
        messages.push({ role: "tool", tool_call_id: entry.callId, content: entry.content });
      }
    }
    const offerTools = !input.lastCall && tools.length > 0;
    if (input.lastCall) messages.push({ role: "user", content: LAST_CALL_NOTE });
    const body = {
      model: this.settings.model,
      messages,
      ...(offerTools ? { tools, parallel_tool_calls: true } : {}),
    };
    const response = await this.complete(body, signal);
    const { value, usage } = this.read(body, response, () => {
      const message = response.choices?.[0]?.message;
      if (!message) throw new Error("the reply has no choices");
      const toolCalls = (Array.isArray(message.tool_calls) ? message.tool_calls : [])
        .filter(
          (c): c is OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall =>
            c?.type === "function",
        )
        .map((c, i) => toolCallOf(c, `call_${input.tick}_${input.transcript.length}_${i}`));
      const content = typeof message.content === "string" ? message.content : null;
      return { content, toolCalls };
    });
    return { ...value, usage };
  }

  /**
   * Reads an answered call's reply with `parse`. The call is charged either
   * way: when the reply cannot be used, its usage goes out on the error.
   */
  private read<T>(
    body: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming,
    response: OpenAI.Chat.Completions.ChatCompletion,
    parse: () => T,
  ): { value: T; usage: TokenUsage } {
    const usage = usageOf((response as { usage?: OpenAI.CompletionUsage } | null)?.usage, {
      prompt: promptChars(body),
      completion: completionChars(response),
    });
    try {
      return { value: parse(), usage };
    } catch (error) {
      const e = toLlmError(error, this.settings, true);
      throw new LlmError(e.kind, e.message, {
        cause: e.cause,
        ...(e.hint ? { hint: e.hint } : {}),
        ...(e.status !== undefined ? { status: e.status } : {}),
        usage,
      });
    }
  }

  private async structured<S extends z.ZodType>(
    name: string,
    schema: S,
    prompt: string,
    signal: AbortSignal | undefined,
  ): Promise<{ value: z.infer<S>; usage: TokenUsage }> {
    const jsonSchema = withoutDefaults(z.toJSONSchema(schema)) as Record<string, unknown>;
    delete jsonSchema.$schema;
    if (!this.textMode) {
      const body: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = {
        model: this.settings.model,
        messages: [
          { role: "system", content: SYSTEM_PROMPT },
          { role: "user", content: prompt },
        ],
        response_format: {
          type: "json_schema",
          json_schema: { name, strict: true, schema: jsonSchema },
        },
      };
      let response: OpenAI.Chat.Completions.ChatCompletion | undefined;
      try {
        response = await this.complete(body, signal);
      } catch (error) {
        if (isContextLengthError(error) || !rejectsStructuredOutput(error)) throw error;
        this.textMode = true;
      }
      if (response) {
        const answer = response;
        return this.read(body, answer, () => this.validate(name, schema, replyText(answer)));
      }
    }
    const body: OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming = {
      model: this.settings.model,
      messages: [
        { role: "system", content: SYSTEM_PROMPT },
        { role: "user", content: `${prompt}\n\n${jsonOnlyInstruction(name, jsonSchema)}` },
      ],
    };
    const response = await this.complete(body, signal);
    return this.read(body, response, () => this.validate(name, schema, replyText(response)));
  }

  private validate<S extends z.ZodType>(name: string, schema: S, text: string): z.infer<S> {
    let data: unknown;
    try {
      data = extractJson(text);
    } catch {
      throw new LlmError(
        "bad-output",
        `The model's ${name} was not JSON: ${JSON.stringify(text.slice(0, 200))}`,
        {
          hint: "Use a model that supports structured outputs or JSON replies.",
        },
      );
    }
    const parsed = schema.safeParse(data);
    if (!parsed.success) {
      const issues = parsed.error.issues
        .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
        .join("; ");
      throw new LlmError("bad-output", `The model's ${name} did not match its schema: ${issues}`);
    }
    return parsed.data;
  }
}
