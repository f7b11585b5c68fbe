/**
 * The toolbox: tool definitions for the model and a dispatcher that turns
 * every tool call, good or bad, allowed or refused, into a {@link ToolOutcome}
 * without throwing.
 */

import { z } from "zod";
import type { ToolCallRequest } from "../../machines/toolLoop.types.js";
import type { BrowserSession } from "../browser/session.js";
import { createRedactor } from "../redact.js";
import type { SearchProvider } from "../search/index.js";
import { createBrowserTool } from "./browser.js";
import { editFileTool } from "./editFile.js";
import { detectInjection } from "./injection.js";
import { listDirTool } from "./listDir.js";
import { PathRefusal } from "./pathJail.js";
import {
  DEFAULT_TOOL_MODE,
  describeAccess,
  Policy,
  type PolicyConfig,
  PolicyRefusal,
  subjectOf,
} from "./policy.js";
import type { AskOperator } from "./prompt.js";
import { readFileTool } from "./readFile.js";
import { createShellExecTool, type ShellOptions } from "./shellExec.js";
import { findDestructive } from "./shellSafety.js";
import type { AccessRequest, Tool, ToolContext, ToolOutcome } from "./types.js";
import { createWebFetchTool, type WebOptions } from "./webFetch.js";
import { createWebSearchTool } from "./webSearch.js";
import { writeFileTool } from "./writeFile.js";

export type { ToolCallRequest } from "../../machines/toolLoop.types.js";
export { detectInjection } from "./injection.js";
export { PathRefusal, resolveInWorkspace } from "./pathJail.js";
export {
  DEFAULT_TOOL_MODE,
  type PolicyConfig,
  PolicyRefusal,
  parseRule,
  TOOL_MODES,
  type ToolMode,
} from "./policy.js";
export { type AskOperator, createTerminalPrompter } from "./prompt.js";
export type { ShellOptions } from "./shellExec.js";
export type { AccessKind, AccessRequest, Tool, ToolContext, ToolOutcome } from "./types.js";
export type { WebOptions } from "./webFetch.js";

/** A tool as described to the model (OpenAI Chat Completions `tools` entry). */
export interface ToolDefinition {
  type: "function";
  function: {
    name: string;
    description: string;
    /** JSON schema of the arguments. */
    parameters: Record<string, unknown>;
  };
}

/** The tools offered to the model, and how to run their calls. */
export interface Toolbox {
  /** Definitions for the `tools` parameter of a chat completion request. */
  definitions: ToolDefinition[];
  /**
   * Runs one tool call. Never throws: every failure and refusal becomes an
   * outcome for the model.
   *
   * @param signal - Aborts the call (the tick was stopped); combined with the context's.
   */
  call(
    toolCall: ToolCallRequest,
    signal?: AbortSignal,
    approval?: OperatorDecision,
  ): Promise<ToolOutcome>;
  /**
   * Ends the tick for the tools: releases what they hold for one tick (the
   * browser and its context). Never throws. The runtime calls it whenever a
   * tick ends (persisting), so a sleeping heartbeat holds no browser.
   */
  endTick(): Promise<void>;
  /** Releases everything at the end of the run (same as {@link endTick} today). Never throws. */
  close(): Promise<void>;
  /**
   * Whether an `ask` rule matches the call's access, checked before the round
   * runs so the tool loop can wait for the operator: the rule and what the
   * call would do, or null (no ask rule matches, or the call will be answered
   * without running: unknown tool, bad arguments, a deny rule, a path refused).
   * Never throws.
   */
  screen(toolCall: ToolCallRequest): Promise<AskMatch | null>;
}

/** An `ask` rule that matches a call (see {@link Toolbox.screen}). */
export interface AskMatch {
  rule: string;
  what: string;
}

/** The operator's answer to a call an `ask` rule matched, given before the call runs. */
export interface OperatorDecision {
  decision: "approve" | "deny";
  reason: string | null;
  /** Who answered, in words (`ops (pid 4242)`, `the terminal`, `the --ask-timeout fallback`). */
  by: string;
}

/** How the toolbox is set up. */
export interface ToolboxOptions {
  /** Tool mode and deny/ask/allow rules; mode `workspace-write` and no rules unless given. */
  policy?: PolicyConfig;
  /** web_fetch: offered only when `enabled` or `allowedHosts` is non-empty. */
  web?: WebOptions & { enabled?: boolean };
  /**
   * web_search: offered only with a provider (`--search-provider`);
   * `unavailable` says why there is none (the refusal for calls).
   */
  search?: { provider?: SearchProvider; unavailable?: string };
  /**
   * browser: offered only with a session (Chromium found) and the web
   * enabled (as for web_fetch); `unavailable` says why there is no session.
   */
  browser?: { session?: BrowserSession; unavailable?: string };
  /** shell_exec settings; `unavailable`: not offered, and calls get this refusal. */
  shell?: ShellOptions & { unavailable?: string };
  /** Asks the operator about calls matching an `ask` rule; without it they are refused. */
  ask?: AskOperator;
  /** Replaces the built-in tools (tests); the policy still applies to tools with `access`. */
  // biome-ignore lint/suspicious/noExplicitAny: tools with different argument types share one list.
  tools?: Tool<any>[];
}

/** Names of the built-in tools, in the order they are offered. */
export const BUILTIN_TOOL_NAMES = [
  "shell_exec",
  "read_file",
  "write_file",
  "edit_file",
  "list_dir",
  "web_fetch",
  "web_search",
  "browser",
] as const;

/** Longest raw argument text echoed back in an `invalid` outcome. */
const MAX_ECHOED_ARGUMENTS = 2_000;

function echoArguments(raw: string): string {
  if (raw.length <= MAX_ECHOED_ARGUMENTS) return `Raw arguments: ${raw}`;
  const rest = raw.length - MAX_ECHOED_ARGUMENTS;
  return `Raw arguments (first ${MAX_ECHOED_ARGUMENTS} characters, ${rest} more cut): ${raw.slice(0, MAX_ECHOED_ARGUMENTS)}`;
}

function toDefinition(tool: Tool<unknown>): ToolDefinition {
  // `input`: fields with defaults are optional for the model.
  const { $schema: _ignored, ...parameters } = z.toJSONSchema(tool.schema, { io: "input" });
  return {
    type: "function",
    function: { name: tool.name, description: tool.description, parameters },
  };
}

/**
 * Builds the toolbox for one workspace.
 *
 * @param ctx - Where the tools may act; passed to every tool run.
 * @param options - Policy, web and shell settings, the operator prompt.
 * @returns The tool definitions for the model and the `call` dispatcher.
 * @throws Error when a policy rule is invalid (the config layer validates them first).
 */
export function createToolbox(ctx: ToolContext, options: ToolboxOptions = {}): Toolbox {
  const policy = new Policy(options.policy ?? {});
  const mode = options.policy?.mode ?? DEFAULT_TOOL_MODE;
  const webEnabled = Boolean(options.web?.enabled) || (options.web?.allowedHosts?.length ?? 0) > 0;
  const redactSecrets = createRedactor(ctx.secrets ?? []);

  // biome-ignore lint/suspicious/noExplicitAny: tools with different argument types share one list.
  const known: Tool<any>[] = options.tools ?? [
    createShellExecTool(options.shell),
    readFileTool,
    writeFileTool,
    editFileTool,
    listDirTool,
    createWebFetchTool(options.web),
    createWebSearchTool(options.search?.provider),
    ...(options.browser?.session ? [createBrowserTool(options.browser.session)] : []),
  ];
  /** Why a known tool is not offered, for the refusal; undefined when it is offered. */
  const unavailable = (tool: Tool<unknown>): string | undefined => {
    if (tool.name === "web_fetch" && !options.tools && !webEnabled) {
      return "Refused: web_fetch is disabled. The operator can enable it with --allow-web or [tools] allowed_hosts; do not retry.";
    }
    if (tool.name === "browser" && !options.tools && !webEnabled) {
      return "Refused: the browser is disabled. The operator can enable it with --allow-web or [tools] allowed_hosts; do not retry.";
    }
    if (tool.name === "web_search" && !options.tools && !options.search?.provider) {
      return `Refused: web_search is not available: ${options.search?.unavailable ?? "no search provider is configured"}. The operator can set one with --search-provider; do not retry.`;
    }
    if (tool.name === "browser" && !options.tools && !options.browser?.session) {
      return `Refused: the browser is not available: ${options.browser?.unavailable ?? "no browser is set up"}. Do not retry; use web_fetch if it is offered.`;
    }
    if (tool.name === "shell_exec" && !options.tools && options.shell?.unavailable) {
      return options.shell.unavailable;
    }
    if (tool.kind && !policy.offers(tool.kind)) {
      return `Refused: ${tool.name} is not available in tool mode "${mode}" (it needs ${tool.kind} access). Do not retry; work with the tools offered.`;
    }
    return undefined;
  };
  const byName = new Map<string, Tool<unknown>>(known.map((tool) => [tool.name, tool]));
  if (!byName.has("browser") && !options.tools && options.browser?.unavailable) {
    const why = options.browser.unavailable;
    byName.set("browser", {
      name: "browser",
      description: "",
      schema: z.unknown(),
      run: () => Promise.reject(new Error(why)),
    });
  }
  const offered = known.filter((tool) => unavailable(tool) === undefined);
  const endTick = async (): Promise<void> => {
    await Promise.all(known.map((tool) => tool.endTick?.().catch(() => undefined)));
  };
  const definitions = offered.map(toDefinition);

  // One question at a time on the terminal, even when calls run in parallel.
  let askQueue: Promise<unknown> = Promise.resolve();
  const askOperator = (question: string, signal: AbortSignal | undefined): Promise<boolean> => {
    const ask = options.ask;
    if (!ask) return Promise.resolve(false);
    const answer = askQueue.then(() => (signal?.aborted ? false : ask(question, signal)));
    askQueue = answer.catch(() => undefined);
    return answer.catch(() => false);
  };

  async function authorize(
    toolName: string,
    access: AccessRequest,
    callCtx: ToolContext & { approval?: OperatorDecision | undefined },
  ): Promise<void> {
    if (access.kind === "shell") {
      const pattern = findDestructive(access.target);
      if (pattern) {
        throw new PolicyRefusal(
          `Refused: the command matches the built-in deny pattern "${pattern}", which no mode or rule allows. Do not try to work around it.`,
          `deny-list: ${pattern}`,
        );
      }
    }
    const subject = await subjectOf(access, callCtx);
    const { verdict, rule } = policy.decide(subject);
    const what = describeAccess(access, subject);
    if (verdict === "allow") return;
    if (verdict === "deny") {
      if (rule) {
        throw new PolicyRefusal(
          `Refused by the tool policy: the deny rule "${rule.text}" matches (${toolName} would ${what}). Do not retry it; choose another approach.`,
          `deny ${rule.text}`,
        );
      }
      throw new PolicyRefusal(
        `Refused by the tool policy: tool mode "${mode}" does not allow ${access.kind} access and no allow rule matches (${toolName} would ${what}). Do not retry it.`,
        `mode ${mode}`,
      );
    }
    const ruleText = rule?.text ?? "";
    const decided = callCtx.approval;
    if (decided?.decision === "approve") return;
    if (decided?.decision === "deny") {
      throw new PolicyRefusal(
        `Refused by the operator (${decided.by}): ${toolName} would ${what}; the ask rule "${ruleText}" was answered no.${decided.reason ? ` Reason: ${decided.reason.replace(/[.!?]?$/, ".")}` : ""} Do not retry it.`,
        `ask ${ruleText}`,
      );
    }
    if (!options.ask) {
      throw new PolicyRefusal(
        `Refused: the ask rule "${ruleText}" needs the operator's approval (${toolName} would ${what}), and there is no interactive terminal to ask. Do not retry it.`,
        `ask ${ruleText}`,
      );
    }
    const yes = await askOperator(
      `${toolName} wants to ${what} (rule ask "${ruleText}"). Allow?`,
      callCtx.signal,
    );
    if (!yes) {
      throw new PolicyRefusal(
        `Refused by the operator: ${toolName} would ${what}; the ask rule "${ruleText}" was answered no. Do not retry it.`,
        `ask ${ruleText}`,
      );
    }
  }

  /** The tool and its parsed arguments, or null when the call will be answered without running. */
  function parseCall(toolCall: ToolCallRequest): { tool: Tool<unknown>; args: unknown } | null {
    const tool = byName.get(toolCall.name);
    if (!tool || unavailable(tool) || toolCall.argumentsError !== undefined) return null;
    if (typeof toolCall.arguments !== "string") return null;
    try {
      const json = toolCall.arguments.trim() === "" ? {} : JSON.parse(toolCall.arguments);
      const parsed = tool.schema.safeParse(json);
      return parsed.success ? { tool, args: parsed.data } : null;
    } catch {
      return null;
    }
  }

  async function screen(toolCall: ToolCallRequest): Promise<AskMatch | null> {
    const found = parseCall(toolCall);
    if (!found) return null;
    try {
      const access = found.tool.access?.(found.args) ?? found.tool.firstAccess?.(found.args);
      if (!access) return null;
      if (access.kind === "shell" && findDestructive(access.target)) return null;
      const callCtx: ToolContext = { ...ctx, allowOutsideWorkdir: mode === "full" };
      const subject = await subjectOf(access, callCtx);
      const { verdict, rule } = policy.decide(subject);
      if (verdict !== "ask") return null;
      return { rule: rule?.text ?? "", what: describeAccess(access, subject) };
    } catch {
      // Refused (a path outside the workspace, …): the round answers it without asking.
      return null;
    }
  }

  async function call(
    toolCall: ToolCallRequest,
    signal?: AbortSignal,
    approval?: OperatorDecision,
  ): Promise<ToolOutcome> {
    const outcome = (status: ToolOutcome["status"], content: string): ToolOutcome => {
      const clean = redactSecrets(content);
      const result: ToolOutcome = {
        callId: toolCall.id,
        name: toolCall.name,
        arguments: toolCall.arguments,
        status,
        content: clean,
      };
      if (status === "ok" || status === "error") {
        const injection = detectInjection(clean);
        if (injection.length > 0) result.injection = injection;
      }
      return result;
    };

    const tool = byName.get(toolCall.name);
    if (!tool) {
      const names = offered.map((t) => t.name).join(", ");
      return outcome(
        "invalid",
        `Unknown tool ${JSON.stringify(toolCall.name)}. Available tools: ${names}.`,
      );
    }
    const notOffered = unavailable(tool);
    if (notOffered) return outcome("refused", notOffered);

    if (toolCall.argumentsError !== undefined || typeof toolCall.arguments !== "string") {
      const why = toolCall.argumentsError ?? `the arguments were a ${typeof toolCall.arguments}`;
      return outcome(
        "invalid",
        `Invalid arguments for ${tool.name}: ${why}. Send the arguments as a string holding a JSON object.`,
      );
    }
    let json: unknown;
    try {
      // Some models send no text at all for a call without arguments.
      json = toolCall.arguments.trim() === "" ? {} : JSON.parse(toolCall.arguments);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      return outcome(
        "invalid",
        `Invalid arguments for ${tool.name}: not valid JSON (${reason}). Send a JSON object.\n${echoArguments(toolCall.arguments)}`,
      );
    }

    try {
      const parsed = tool.schema.safeParse(json);
      if (!parsed.success) {
        const issues = parsed.error.issues.map((issue) => {
          const where = issue.path.length === 0 ? "(arguments)" : issue.path.map(String).join(".");
          return `- ${where}: ${issue.message}`;
        });
        return outcome(
          "invalid",
          `Invalid arguments for ${tool.name}:\n${issues.join("\n")}\n${echoArguments(toolCall.arguments)}`,
        );
      }
      const callSignal =
        signal && ctx.signal ? AbortSignal.any([ctx.signal, signal]) : (signal ?? ctx.signal);
      const callCtx: ToolContext & { approval?: OperatorDecision } = {
        ...ctx,
        ...(callSignal ? { signal: callSignal } : {}),
        allowOutsideWorkdir: mode === "full",
        ...(approval ? { approval } : {}),
      };
      callCtx.authorize = (access) => authorize(tool.name, access, callCtx);
      const access = tool.access?.(parsed.data);
      if (access) await callCtx.authorize(access);
      return outcome("ok", await tool.run(parsed.data, callCtx));
    } catch (error) {
      if (error instanceof PathRefusal || error instanceof PolicyRefusal) {
        return outcome("refused", error.message);
      }
      const message = error instanceof Error ? error.message : String(error);
      return outcome("error", `Error: ${message}`);
    }
  }

  return { definitions, call, screen, endTick, close: endTick };
}
