/**
 * Builds the toolbox `run` uses from the resolved settings: policy, web and
 * shell options, the operator prompt when there is a terminal to ask on.
 */
import fs from "node:fs/promises";
import path from "node:path";
import type { RunSettings } from "../../schemas/config.js";
import { createToolbox, type Toolbox } from "./index.js";
import { type AskOperator, createTerminalPrompter } from "./prompt.js";

/** Where the toolbox acts and how it can reach the operator. */
export interface ToolboxPlace {
  /** Real path of the workspace. */
  workdir: string;
  /** Real path of the state dir. */
  stateDir: string;
  /** Config files that set the policy (ravenclaws.toml, the user config): tools may not write them. */
  configFiles: (string | undefined)[];
  /** The operator's terminal: `ask` rules prompt here only when both are TTYs. */
  terminal: {
    stdin: NodeJS.ReadableStream & { isTTY?: boolean };
    stderr: NodeJS.WritableStream & { isTTY?: boolean };
  };
  /** Ctrl+C at a prompt: stop the run as SIGINT would. */
  onInterrupt?(): void;
}

async function realOrResolved(file: string): Promise<string> {
  return fs.realpath(file).catch(() => path.resolve(file));
}

/** The toolbox for `run`, configured from its settings. */
export async function toolboxFromSettings(
  settings: Pick<
    RunSettings,
    | "apiKey"
    | "toolMode"
    | "toolDeny"
    | "toolAsk"
    | "toolAllow"
    | "allowWeb"
    | "allowedHosts"
    | "envAllow"
    | "shellTimeout"
  >,
  place: ToolboxPlace,
): Promise<Toolbox> {
  const interactive = Boolean(place.terminal.stdin.isTTY && place.terminal.stderr.isTTY);
  const ask: AskOperator | undefined = interactive
    ? createTerminalPrompter({
        input: place.terminal.stdin,
        output: place.terminal.stderr,
        terminal: true,
        ...(place.onInterrupt ? { onInterrupt: place.onInterrupt } : {}),
      })
    : undefined;
  const protectedPaths = await Promise.all(
    place.configFiles.filter((f): f is string => Boolean(f)).map(realOrResolved),
  );
  return createToolbox(
    {
      workdir: place.workdir,
      stateDir: place.stateDir,
      secrets: settings.apiKey ? [settings.apiKey] : [],
      protectedPaths,
    },
    {
      policy: {
        mode: settings.toolMode,
        deny: settings.toolDeny,
        ask: settings.toolAsk,
        allow: settings.toolAllow,
      },
      web: { enabled: settings.allowWeb, allowedHosts: settings.allowedHosts },
      shell: { timeoutSec: settings.shellTimeout, envAllow: settings.envAllow },
      ...(ask ? { ask } : {}),
    },
  );
}
