/**
 * Thin adapter over the `openai` SDK for any OpenAI-compatible endpoint.
 * Structured outputs are validated with zod at the boundary, usage is counted
 * per call (a response without `usage` counts as a call with zero tokens), and
 * every request takes the caller's AbortSignal. Retries and timeouts are the
 * SDK's (one retry layer).
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
import type { CallModelInput, CallModelOutput } from "../machines/toolLoop.types.js";
import { AssessmentSchema, MAX_PLAN_STEPS, PlanSchema } from "../schemas/llm.js";
import {
  assessPrompt,
  executePrompt,
  jsonOnlyInstruction,
  LAST_CALL_NOTE,
  planPrompt,
  SYSTEM_PROMPT,
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

/** Creates the SDK client. Local servers need no key; a placeholder is sent then. */
export function createOpenAIClient(settings: LlmSettings): OpenAI {
  return new OpenAI({
    baseURL: settings.baseURL,
    apiKey: settings.apiKey || "not-needed",
    timeout: settings.timeoutMs,
    maxRetries: settings.maxRetries,
  });
}

/** Converts the SDK's usage field (possibly absent) into {@link TokenUsage}. */
export function usageOf(usage: OpenAI.CompletionUsage | undefined | null): TokenUsage {
  const prompt = usage?.prompt_tokens ?? 0;
  const completion = usage?.completion_tokens ?? 0;
  return {
    calls: 1,
    promptTokens: prompt,
    completionTokens: completion,
    totalTokens: usage?.total_tokens ?? prompt + completion,
  };
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
): LlmError {
  if (error instanceof LlmError) return error;
  if (error instanceof OpenAI.APIUserAbortError) {
    return new LlmError("aborted", "The model request was aborted.", { cause: error });
  }
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new LlmError("timeout", `The model request to ${settings.baseURL} timed out.`, {
      cause: error,
      hint: "Raise --request-timeout, or check the server's load.",
    });
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

/** A 4xx that means "this server does not do `response_format` JSON schemas". */
function rejectsStructuredOutput(error: unknown): boolean {
  if (!(error instanceof OpenAI.APIError)) return false;
  if (error.status !== 400 && error.status !== 422 && error.status !== 501) return false;
  return /response_format|json_schema|structured|schema/i.test(error.message);
}

/**
 * The model, as the heartbeat's phases use it.
 */
export class LlmService {
  /** Set once the server has rejected `response_format`: later calls go straight to text mode. */
  private textMode = false;

  constructor(
    private readonly client: OpenAI,
    private readonly settings: Pick<LlmSettings, "baseURL" | "model">,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** The assess phase: one call, structured output. */
  async assess(input: AssessInput, signal?: AbortSignal): Promise<AssessOutput> {
    const { value, usage } = await this.structured(
      "assessment",
      AssessmentSchema,
      assessPrompt(input, this.clock()),
      signal,
    );
    return {
      assessment: {
        ...value,
        assessment: value.assessment.slice(0, 2000),
        progressSummary: value.progressSummary.slice(0, 1500),
      },
      usage,
    };
  }

  /** The plan phase: one call, structured output. */
  async plan(input: PlanInput, signal?: AbortSignal): Promise<PlanOutput> {
    const { value, usage } = await this.structured("plan", PlanSchema, planPrompt(input), signal);
    const steps = value.steps
      .map((s) => s.trim())
      .filter(Boolean)
      .slice(0, MAX_PLAN_STEPS);
    return { plan: { steps }, usage };
  }

  /** One model call of the execute phase's tool loop. */
  async callWithTools(
    input: CallModelInput,
    tools: ChatTool[],
    signal?: AbortSignal,
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
    try {
      const response = await this.client.chat.completions.create(
        {
          model: this.settings.model,
          messages,
          ...(offerTools ? { tools, parallel_tool_calls: true } : {}),
        },
        { signal },
      );
      const message = response.choices?.[0]?.message;
      if (!message) throw new Error("the reply has no choices");
      const toolCalls = (message.tool_calls ?? [])
        .filter(
          (c): c is OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall =>
            c.type === "function",
        )
        .map((c, i) => ({
          id: c.id || `call_${input.tick}_${input.transcript.length}_${i}`,
          name: c.function.name,
          arguments: c.function.arguments ?? "",
        }));
      return { content: message.content ?? null, toolCalls, usage: usageOf(response.usage) };
    } catch (error) {
      throw toLlmError(error, this.settings);
    }
  }

  private async structured<S extends z.ZodType>(
    name: string,
    schema: S,
    prompt: string,
    signal: AbortSignal | undefined,
  ): Promise<{ value: z.infer<S>; usage: TokenUsage }> {
    const jsonSchema = z.toJSONSchema(schema) as Record<string, unknown>;
    delete jsonSchema.$schema;
    let text: string;
    let usage: TokenUsage;
    try {
      if (!this.textMode) {
        try {
          const response = await this.client.chat.completions.create(
            {
              model: this.settings.model,
              messages: [
                { role: "system", content: SYSTEM_PROMPT },
                { role: "user", content: prompt },
              ],
              response_format: {
                type: "json_schema",
                json_schema: { name, strict: true, schema: jsonSchema },
              },
            },
            { signal },
          );
          text = response.choices?.[0]?.message?.content ?? "";
          usage = usageOf(response.usage);
          return { value: this.validate(name, schema, text), usage };
        } catch (error) {
          if (!rejectsStructuredOutput(error)) throw error;
          this.textMode = true;
        }
      }
      const response = await this.client.chat.completions.create(
        {
          model: this.settings.model,
          messages: [
            { role: "system", content: SYSTEM_PROMPT },
            { role: "user", content: `${prompt}\n\n${jsonOnlyInstruction(name, jsonSchema)}` },
          ],
        },
        { signal },
      );
      text = response.choices?.[0]?.message?.content ?? "";
      usage = usageOf(response.usage);
      return { value: this.validate(name, schema, text), usage };
    } catch (error) {
      throw toLlmError(error, this.settings);
    }
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
