/**
 * The toolbox: tool definitions for the model and a dispatcher that turns
 * every tool call, good or bad, into a {@link ToolOutcome} without throwing.
 */

import { z } from "zod";
import type { ToolCallRequest } from "../../machines/toolLoop.types.js";
import { listDirTool } from "./listDir.js";
import { readFileTool } from "./readFile.js";
import { SandboxError } from "./sandbox.js";
import type { Tool, ToolContext, ToolOutcome } from "./types.js";
import { writeFileTool } from "./writeFile.js";

export type { ToolCallRequest } from "../../machines/toolLoop.types.js";
export { resolveInWorkspace, SandboxError } from "./sandbox.js";
export type { Tool, ToolContext, ToolOutcome } from "./types.js";

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
  /** Runs one tool call. Never throws: every failure becomes an outcome for the model. */
  call(toolCall: ToolCallRequest): Promise<ToolOutcome>;
}

/** The workspace tools: `read_file`, `write_file`, `list_dir`. */
// biome-ignore lint/suspicious/noExplicitAny: tools with different argument types share one list.
export const defaultTools: Tool<any>[] = [readFileTool, writeFileTool, listDirTool];

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
 * @param tools - The tools to offer; {@link defaultTools} unless given.
 * @returns The tool definitions for the model and the `call` dispatcher.
 */
export function createToolbox(
  ctx: ToolContext,
  // biome-ignore lint/suspicious/noExplicitAny: tools with different argument types share one list.
  tools: Tool<any>[] = defaultTools,
): Toolbox {
  const byName = new Map<string, Tool<unknown>>(tools.map((tool) => [tool.name, tool]));
  const definitions = tools.map(toDefinition);

  async function call(toolCall: ToolCallRequest): Promise<ToolOutcome> {
    const outcome = (status: ToolOutcome["status"], content: string): ToolOutcome => ({
      callId: toolCall.id,
      name: toolCall.name,
      arguments: toolCall.arguments,
      status,
      content,
    });

    const tool = byName.get(toolCall.name);
    if (!tool) {
      const known = [...byName.keys()].join(", ");
      return outcome(
        "invalid",
        `Unknown tool ${JSON.stringify(toolCall.name)}. Available tools: ${known}.`,
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
      return outcome("ok", await tool.run(parsed.data, ctx));
    } catch (error) {
      if (error instanceof SandboxError) return outcome("refused", error.message);
      const message = error instanceof Error ? error.message : String(error);
      return outcome("error", `Error: ${message}`);
    }
  }

  return { definitions, call };
}
