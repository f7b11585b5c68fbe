/**
 * The per-heartbeat wiring shared by everything that runs ticks without a
 * terminal: the host of `serve` (a state dir) and the workers of
 * `ravenclaws worker` (a database). Given a heartbeat's store, workdir and
 * settings it builds the same actor `run` builds: the model client (cached
 * per endpoint), the toolbox and its sandbox, the observer (checklist and
 * workspace fingerprint), the notifier (kept per heartbeat, so coalescing
 * spans ticks) and the approvals wait, then `prepareHeartbeat` of
 * src/runtime.ts. See docs/architecture.md, "The host" and "Workers".
 */

import * as fs from "node:fs/promises";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { toErrorInfo } from "../errors.js";
import type { HeartbeatSettings, Prices } from "../machines/heartbeat.types.js";
import { prepareHeartbeat, type RunningHeartbeat, type RuntimeEvents } from "../runtime.js";
import type { SavedSettings } from "../schemas/stateFile.js";
import type { DecisionSource } from "../services/approvals.js";
import { notifyApprovalNeeded } from "../services/approvalWait.js";
import { parseDuration } from "../services/duration.js";
import type { LlmService } from "../services/llm.js";
import type { Notifier, NotifyingEvents } from "../services/notify/index.js";
import { checklistFileOf, workspaceObserver } from "../services/observe.js";
import type { HeartbeatStore } from "../services/store/index.js";
import { durationSeconds, type RunSettings } from "../settings.js";

/** The model calls a heartbeat makes. */
export type HeartbeatLlm = Pick<LlmService, "assess" | "plan" | "callWithTools">;

/** The user config (the API key may come from it), as `loadUserConfig` reads it. */
export type UserConfig = { path: string; data: Record<string, unknown> };

/** The run settings a heartbeat's actor gets (as `run` builds them). */
export function heartbeatSettingsOf(settings: RunSettings): HeartbeatSettings {
  return {
    maxTicks: settings.maxTicks,
    tickIntervalSec: settings.tickInterval,
    maxIterationsPerTick: settings.maxIterationsPerTick,
    toolsEnabled: settings.tools,
    maxConsecutiveFailures: settings.maxConsecutiveFailures,
    maxTokens: settings.maxTokens,
    maxTokensPerTick: settings.maxTokensPerTick,
    failureBackoffSec: settings.failureBackoff,
    cron: settings.cron ?? null,
    activeHours: settings.activeHours ?? null,
    timezone: settings.timezone ?? null,
    idleRecheckSec: parseDuration(settings.idleRecheck) ?? 0,
    maxTokensPerDay: settings.maxTokensPerDay,
    maxCostPerDay: settings.maxCostPerDay,
    prices: pricesOf(settings),
  };
}

/** The prices of the cost figures and the daily cost cap. */
export function pricesOf(settings: RunSettings): Prices {
  return {
    input: settings.priceInput,
    output: settings.priceOutput,
    cachedInput: settings.priceCachedInput,
  };
}

/** Options of {@link HeartbeatWiring}. */
export interface WiringOptions {
  /** The process environment (the API key, notify tokens; never a heartbeat's). */
  env: NodeJS.ProcessEnv;
  /**
   * The directory tools must never touch and the fingerprint skips: the
   * state dir (the host), or one derived from the workdir (a worker, whose
   * heartbeats live in the database).
   */
  stateDir: string | ((workdir: string) => string);
  /** Milliseconds since the epoch; injectable for tests. */
  now?: () => number;
  /** The model adapter for resolved settings (tests, the bench); default: the openai client over HTTP, one per endpoint. */
  llmFor?: (settings: RunSettings) => Promise<HeartbeatLlm>;
  /** The user config; undefined: loaded (once) on first use; null: none. */
  userConfig?: UserConfig | null;
}

/** One heartbeat to wire: where it is kept and works, and what its runner wants to hear. */
export interface WiredHeartbeat {
  id: string;
  store: HeartbeatStore;
  /** Its workdir (real path): where its tools work and its checklist is. */
  workdir: string;
  settings: RunSettings;
  /** The goal of a new heartbeat; undefined to restore the stored one. */
  goal?: string | undefined;
  /** The runner's own events; notifications are added to them. */
  events?: RuntimeEvents;
  /** Where its approvals wait reads the operator's decisions; default the decision files of its state dir. */
  decisions?: DecisionSource;
  /** A problem of the heartbeat that does not stop it (a notify token variable that is missing). */
  onProblem?(message: string): void;
}

/**
 * The wiring of many heartbeats in one process (a host, a worker): settings
 * resolution, one model client per endpoint, one notifier per heartbeat.
 */
export class HeartbeatWiring {
  private readonly now: () => number;
  private userConfig: UserConfig | null | undefined;
  private readonly llms = new Map<string, HeartbeatLlm>();
  /** Each heartbeat's notifier (null: none configured), kept across ticks for coalescing. */
  private readonly notifiers = new Map<string, Notifier | null>();

  constructor(private readonly options: WiringOptions) {
    this.now = options.now ?? Date.now;
    this.userConfig = options.userConfig;
  }

  /** The directory tools must not touch for a heartbeat in `workdir`. */
  stateDirOf(workdir: string): string {
    const { stateDir } = this.options;
    return typeof stateDir === "function" ? stateDir(workdir) : stateDir;
  }

  /** The user config, loaded once (null when there is none or it cannot be read). */
  async loadUserConfig(): Promise<UserConfig | null> {
    if (this.userConfig === undefined) {
      const { loadUserConfig } = await import("../services/config.js");
      this.userConfig = await loadUserConfig(this.options.env).catch(() => null);
    }
    return this.userConfig ?? null;
  }

  /**
   * Resolves run settings as `run` does: the given values as flags, then the
   * environment, the saved settings (when given), the user config, defaults.
   * Throws `UsageError` naming the setting for a bad value.
   */
  async resolve(flags: Record<string, unknown>, saved?: SavedSettings): Promise<RunSettings> {
    const { resolveRunSettings } = await import("../services/config.js");
    const user = await this.loadUserConfig();
    const { settings } = resolveRunSettings({
      flags: flags as Parameters<typeof resolveRunSettings>[0]["flags"],
      env: this.options.env,
      ...(saved ? { saved: { path: `heartbeat-${String(flags.id)}.json`, data: saved } } : {}),
      ...(user ? { user } : {}),
    });
    return settings;
  }

  /** A stored heartbeat's settings: the ones saved with it (the API key is the process's). */
  resolveSaved(id: string, saved: SavedSettings): Promise<RunSettings> {
    return this.resolve({ id }, saved);
  }

  /** The model client for these settings (one per endpoint, model, timeout and retries). */
  async llmFor(settings: RunSettings): Promise<HeartbeatLlm> {
    if (this.options.llmFor) return this.options.llmFor(settings);
    const key = JSON.stringify([
      settings.baseUrl,
      settings.model,
      settings.requestTimeout,
      settings.maxRetries,
    ]);
    let llm = this.llms.get(key);
    if (!llm) {
      const { createOpenAIClient, LlmService } = await import("../services/llm.js");
      const llmSettings = {
        baseURL: settings.baseUrl,
        apiKey: settings.apiKey,
        model: settings.model,
        timeoutMs: settings.requestTimeout * 1000,
        maxRetries: settings.maxRetries,
      };
      llm = new LlmService(createOpenAIClient(llmSettings), llmSettings);
      this.llms.set(key, llm);
    }
    return llm;
  }

  /** The toolbox (and sandbox) of a heartbeat in `workdir`, with no operator terminal. */
  async toolboxFor(workdir: string, settings: RunSettings) {
    const { toolboxFromSettings } = await import("../services/tools/fromSettings.js");
    const { CONFIG_FILE_NAME } = await import("../services/config.js");
    const given = this.stateDirOf(workdir);
    const stateDir = await fs.realpath(given).catch(() => path.resolve(given));
    const user = await this.loadUserConfig();
    const configured = await toolboxFromSettings(settings, {
      workdir,
      stateDir,
      configFiles: [user?.path, path.join(workdir, CONFIG_FILE_NAME)],
      userConfigDir: user ? path.dirname(user.path) : undefined,
      secretFiles: [],
      env: this.options.env,
      // No operator terminal: `ask` matches wait for `ravenclaws approve`/`deny` (see prepare).
      terminal: { stdin: nonTty(), stderr: nonTty() },
    });
    return configured.toolbox;
  }

  /**
   * The notification events of a heartbeat (`--notify-url`, `--notify-command`
   * from the process environment or the user config), or null. A token
   * variable that is missing is the heartbeat's problem (`onProblem`), not
   * the process's.
   */
  async notifyingFor(
    heartbeat: Pick<WiredHeartbeat, "id" | "store" | "workdir" | "settings" | "onProblem">,
  ): Promise<NotifyingEvents | null> {
    const notify = await import("../services/notify/index.js");
    if (!this.notifiers.has(heartbeat.id)) {
      const { createRedactor } = await import("../services/redact.js");
      const { settings } = heartbeat;
      let notifier: Notifier | null = null;
      try {
        const token = notify.notifyTokenOf(settings, this.options.env);
        notifier = notify.notifierFromSettings(settings, {
          env: this.options.env,
          cwd: this.stateDirOf(heartbeat.workdir),
          redact: createRedactor([settings.apiKey, token]),
          apiKey: settings.apiKey,
          token,
          journal: (entry) => heartbeat.store.append([entry]),
        });
      } catch (error) {
        heartbeat.onProblem?.(toErrorInfo(error).message);
      }
      this.notifiers.set(heartbeat.id, notifier);
    }
    const notifier = this.notifiers.get(heartbeat.id);
    return notifier ? notify.notifyingEvents(notifier, this.now) : null;
  }

  /**
   * The heartbeat's actor, prepared (not started): a new heartbeat when
   * `goal` is given and nothing is stored, else the stored snapshot restored.
   */
  async prepare(heartbeat: WiredHeartbeat): Promise<RunningHeartbeat> {
    const { savedSettingsOf } = await import("../services/config.js");
    const { settings, workdir } = heartbeat;
    const llm = await this.llmFor(settings);
    const toolbox = settings.tools ? await this.toolboxFor(workdir, settings) : null;
    const notifying = await this.notifyingFor(heartbeat);
    const own = heartbeat.events ?? {};
    return prepareHeartbeat(
      { id: heartbeat.id, goal: heartbeat.goal, settings: heartbeatSettingsOf(settings) },
      {
        llm,
        store: heartbeat.store,
        toolbox,
        now: this.now,
        prices: pricesOf(settings),
        savedSettings: savedSettingsOf(settings),
        ...(heartbeat.decisions ? { decisions: heartbeat.decisions } : {}),
        // No terminal here: `ask` matches wait for approve/deny (decisions) or the timeout.
        approvals: {
          timeoutSec: settings.askTimeout ? durationSeconds(settings.askTimeout) : null,
          fallback: settings.askFallback === "allow" ? "allow" : "deny",
        },
        observe: workspaceObserver({
          workdir,
          stateDir: this.stateDirOf(workdir),
          checklistFile: checklistFileOf(workdir, settings.checklist),
          checklistMaxBytes: settings.checklistMaxBytes,
        }),
        events: {
          ...own,
          approvalNeeded: (pending, tick, again, which) => {
            own.approvalNeeded?.(pending, tick, again, which);
            if (notifying) notifyApprovalNeeded(notifying, pending, tick, again, which);
          },
          persisted: (file, entries) => {
            own.persisted?.(file, entries);
            notifying?.persisted(file, entries);
          },
        },
      },
    );
  }

  /** Drops a heartbeat's notifier after its pending deliveries had their bounded wait. */
  async forget(id: string): Promise<void> {
    const notifier = this.notifiers.get(id);
    this.notifiers.delete(id);
    await notifier?.close();
  }

  /** Gives every notifier's pending deliveries their bounded wait. */
  async close(): Promise<void> {
    await Promise.all([...this.notifiers.values()].map((n) => n?.close()));
  }
}

function nonTty(): NodeJS.ReadableStream & NodeJS.WritableStream & { isTTY: false } {
  return Object.assign(new PassThrough(), { isTTY: false as const });
}
