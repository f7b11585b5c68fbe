/**
 * Notifications (`--notify-url`, `--notify-command`, `--notify-on`): builds
 * the notifier from the run settings. See README, Unattended runs.
 */
import { UsageError } from "../../errors.js";
import { type NotifyEventKind, type RunSettings, SETTINGS } from "../../settings.js";
import type { Redactor } from "../redact.js";
import { createNotifier, type Notifier, type NotifierOptions } from "./notifier.js";
import { commandEnv, commandTransport, httpTransport, type Transport } from "./transports.js";

export * from "./event.js";
export * from "./heartbeatEvents.js";
export * from "./notifier.js";
export * from "./transports.js";

/** Timeout of one delivery attempt (HTTP request or command). */
export const DELIVERY_TIMEOUT_MS = 10_000;

/**
 * The bearer token for `--notify-url`: the value of the environment variable
 * `--notify-token-env` names. A name given with no URL to send it to, or
 * naming an unset or empty variable, is a usage error.
 */
export function notifyTokenOf(
  settings: Pick<RunSettings, "notifyUrl" | "notifyTokenEnv">,
  env: NodeJS.ProcessEnv,
): string | undefined {
  const name = settings.notifyTokenEnv;
  if (!name || !settings.notifyUrl) return undefined;
  const token = env[name];
  if (!token) {
    throw new UsageError(
      `--notify-token-env names the environment variable ${name}, which is not set (or empty).`,
      {
        option: "--notify-token-env",
        code: "notify-token-missing",
        hint: `Export ${name}=<token> in the environment that runs ravenclaws (the token itself is never a flag), or drop --notify-token-env.`,
      },
    );
  }
  return token;
}

/** What {@link notifierFromSettings} needs besides the settings. */
export interface NotifierDeps
  extends Pick<NotifierOptions, "journal" | "warn" | "clock" | "retryDelaysMs" | "closeTimeoutMs"> {
  env: NodeJS.ProcessEnv;
  /** Where the command runs. */
  cwd: string;
  /** Redacts the API key and the notify token. */
  redact: Redactor;
  /** The API key, kept out of the command's environment whatever its variable's name. */
  apiKey?: string | undefined;
  /** The notify token (see {@link notifyTokenOf}). */
  token?: string | undefined;
  timeoutMs?: number;
}

/**
 * The notifier of a run, or null when neither `--notify-url` nor
 * `--notify-command` is set. The command's environment has neither the API
 * key nor the notify token: their variables are dropped by name, and any
 * variable holding either value by value.
 */
export function notifierFromSettings(
  settings: Pick<RunSettings, "notifyUrl" | "notifyCommand" | "notifyTokenEnv" | "notifyOn">,
  deps: NotifierDeps,
): Notifier | null {
  const timeoutMs = deps.timeoutMs ?? DELIVERY_TIMEOUT_MS;
  const transports: Transport[] = [];
  if (settings.notifyUrl) transports.push(httpTransport(settings.notifyUrl, deps.token, timeoutMs));
  if (settings.notifyCommand) {
    const dropNames = [
      ...(SETTINGS.apiKey.env ?? []),
      ...(settings.notifyTokenEnv ? [settings.notifyTokenEnv] : []),
    ];
    transports.push(
      commandTransport(settings.notifyCommand, {
        env: commandEnv(deps.env, dropNames, [deps.apiKey, deps.token]),
        cwd: deps.cwd,
        timeoutMs,
      }),
    );
  }
  if (transports.length === 0) return null;
  return createNotifier({
    transports,
    on: settings.notifyOn as NotifyEventKind[],
    redact: deps.redact,
    ...(deps.journal ? { journal: deps.journal } : {}),
    ...(deps.warn ? { warn: deps.warn } : {}),
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.retryDelaysMs ? { retryDelaysMs: deps.retryDelaysMs } : {}),
    ...(deps.closeTimeoutMs !== undefined ? { closeTimeoutMs: deps.closeTimeoutMs } : {}),
  });
}
