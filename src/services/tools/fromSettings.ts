/**
 * Builds the toolbox `run` uses from the resolved settings: policy, web and
 * shell options, the operator prompt when there is a terminal to ask on.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { UsageError } from "../../errors.js";
import type { RunSettings } from "../../schemas/config.js";
import { findChromium } from "../browser/chromium.js";
import { BrowserSession } from "../browser/session.js";
import { createSearchProvider } from "../search/index.js";
import { createToolbox, type Toolbox } from "./index.js";
import { type AskOperator, createTerminalPrompter } from "./prompt.js";
import type { ShellConfinement } from "./sandbox/confinement.js";
import { BWRAP_PACKAGE, BwrapSandbox, SandboxUnavailable } from "./sandbox/runner.js";
import { scrubEnv } from "./shellSafety.js";

/** Where the toolbox acts and how it can reach the operator. */
export interface ToolboxPlace {
  /** Real path of the workspace. */
  workdir: string;
  /** Real path of the state dir. */
  stateDir: string;
  /** Config files that set the policy (ravenclaws.toml, the user config): tools may not write them. */
  configFiles: (string | undefined)[];
  /** The user config dir (where `config set apiKey` keeps the key): hidden from shell commands. */
  userConfigDir?: string | undefined;
  /** Config files shell commands may not even read (a `--config` file, a toml holding the API key). */
  secretFiles?: (string | undefined)[];
  /** The environment, for `RAVENCLAWS_BWRAP_PATH` (which bwrap to use; tests and unusual installs). */
  env?: NodeJS.ProcessEnv;
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

/** The toolbox and how its shell is confined. */
export interface ConfiguredToolbox {
  toolbox: Toolbox;
  shell: ShellConfinement;
  /** What to tell the operator at start (a warning for `off`, a notice when shell_exec is not offered). */
  notice?: string;
  /** The terminal prompt for `ask` rules, when stdin and stderr are terminals. */
  ask?: AskOperator;
}

/**
 * Decides how shell_exec runs from `--sandbox`: probes bubblewrap (once, with
 * the real mounts) unless the mode is `off`.
 *
 * @throws {@link UsageError} (exit 2) for `bwrap` when bubblewrap is not usable.
 */
async function confineShell(
  settings: Pick<RunSettings, "sandbox" | "shellNetwork" | "toolMode">,
  place: ToolboxPlace,
  protectedPaths: string[],
): Promise<{ sandbox?: BwrapSandbox; shell: ShellConfinement; notice?: string }> {
  const mode = settings.sandbox;
  const network = settings.shellNetwork;
  if (mode === "off") {
    return {
      shell: {
        mode,
        sandbox: "none",
        offered: true,
        network: true,
        reason: "--sandbox off: commands run unconfined on the host",
      },
      notice:
        "ravenclaws: warning: --sandbox off: shell_exec commands run unconfined, as you, on this machine: they can read the API key from the process tree, write anywhere you can and reach the network. Use --sandbox auto (the default) with bubblewrap installed to confine them.",
    };
  }
  const hiddenFiles = await Promise.all(
    (place.secretFiles ?? []).filter((f): f is string => Boolean(f)).map(realOrResolved),
  );
  const sandbox = new BwrapSandbox(
    {
      workdir: place.workdir,
      stateDir: place.stateDir,
      hiddenDirs: place.userConfigDir ? [await realOrResolved(place.userConfigDir)] : [],
      hiddenFiles,
      protectedFiles: protectedPaths,
      network,
    },
    place.env?.RAVENCLAWS_BWRAP_PATH ? { bwrapPath: place.env.RAVENCLAWS_BWRAP_PATH } : {},
  );
  try {
    await sandbox.probe();
  } catch (error) {
    if (!(error instanceof SandboxUnavailable)) throw error;
    const install = `Install the ${BWRAP_PACKAGE} package (Debian/Ubuntu: sudo apt-get install ${BWRAP_PACKAGE}; Fedora: sudo dnf install ${BWRAP_PACKAGE}) and make sure user namespaces are enabled`;
    if (mode === "bwrap") {
      throw new UsageError(
        `--sandbox bwrap: ${BWRAP_PACKAGE} is not usable here: ${error.message}.`,
        {
          option: "--sandbox",
          code: "sandbox-unavailable",
          hint: `${install}, or use --sandbox auto to run without shell_exec.`,
        },
      );
    }
    return {
      shell: {
        mode,
        sandbox: "none",
        offered: false,
        network: false,
        reason: `${BWRAP_PACKAGE} is not usable here (${error.message}), so shell_exec is not offered`,
      },
      notice: `ravenclaws: shell_exec is not offered: ${BWRAP_PACKAGE} is not usable here (${error.message}). ${install} to enable it, or pass --sandbox off to run commands unconfined.`,
    };
  }
  return {
    sandbox,
    shell: {
      mode,
      sandbox: "bwrap",
      offered: true,
      network,
      reason:
        mode === "bwrap"
          ? `--sandbox bwrap: ${BWRAP_PACKAGE} works here`
          : `--sandbox auto: ${BWRAP_PACKAGE} works here`,
    },
  };
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
    | "sandbox"
    | "shellNetwork"
    | "searchProvider"
    | "searchUrl"
    | "searchKeyEnv"
    | "browserPath"
  >,
  place: ToolboxPlace,
): Promise<ConfiguredToolbox> {
  const search = createSearchProvider(
    { provider: settings.searchProvider, url: settings.searchUrl, keyEnv: settings.searchKeyEnv },
    place.env ?? process.env,
  );
  if (settings.searchProvider && "problem" in search) {
    throw new UsageError(`web_search cannot be offered: ${search.problem}.`, {
      option: "--search-provider",
      code: "search-unavailable",
      hint: "Fix the search settings (README, Tools), or leave --search-provider unset for no web_search.",
    });
  }
  const secrets = [settings.apiKey, search.provider ? search.secret : undefined].filter(
    (s): s is string => Boolean(s),
  );
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
  const confinement = await confineShell(settings, place, protectedPaths);
  // The browser: with the web enabled, when a Chromium is found; else one notice.
  const webEnabled = settings.allowWeb || settings.allowedHosts.length > 0;
  let browser: { session?: BrowserSession; unavailable?: string } = {};
  let browserNotice: string | undefined;
  if (webEnabled) {
    const chromium = findChromium(settings.browserPath, (place.env ?? process.env).PATH);
    if (chromium.path) {
      browser = {
        session: new BrowserSession({
          executablePath: chromium.path,
          allowedHosts: settings.allowedHosts,
          // Chromium gets no variable holding a secret (the API key, the search key).
          env: scrubEnv(place.env ?? process.env, { secrets }).env,
        }),
      };
    } else {
      browser = { unavailable: chromium.problem };
      browserNotice = `ravenclaws: the browser tool is not offered: ${chromium.problem}.`;
    }
  }
  const toolbox = createToolbox(
    {
      workdir: place.workdir,
      stateDir: place.stateDir,
      secrets,
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
      search: search.provider ? { provider: search.provider } : { unavailable: search.problem },
      browser,
      shell: {
        timeoutSec: settings.shellTimeout,
        envAllow: settings.envAllow,
        ...(confinement.sandbox ? { sandbox: confinement.sandbox } : {}),
        ...(confinement.shell.offered
          ? {}
          : {
              unavailable: `Refused: shell_exec is not available: ${confinement.shell.reason}. Do not retry; work with the tools offered.`,
            }),
      },
      ...(ask ? { ask } : {}),
    },
  );
  const notice = [confinement.notice, browserNotice].filter(Boolean).join("\n");
  return {
    toolbox,
    shell: confinement.shell,
    ...(notice ? { notice } : {}),
    ...(ask ? { ask } : {}),
  };
}
