/**
 * The headless Chromium behind the `browser` tool: launched lazily at the
 * first call, one browser context per tick. Every connection it makes
 * (navigations, redirects, subresources, websockets) goes through the
 * egress proxy (`egressProxy.ts`), which checks the host against the web
 * settings and the `browse(HOST)` rules. Closed at the end of each tick and
 * when the run ends; killed with the process.
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { PolicyRefusal } from "../tools/policy.js";
import type { ToolContext } from "../tools/types.js";
import { hostAllowed, isPrivateAddress } from "../tools/webFetch.js";
import { chromiumArgs } from "./chromium.js";
import { type EgressProxy, type EgressVerdict, startEgressProxy } from "./egressProxy.js";

/** Time allowed for a navigation (`open`, a click that navigates). */
export const BROWSER_NAVIGATION_TIMEOUT_MS = 30_000;
/** Time allowed for one other action (finding an element, clicking, filling, a screenshot). */
export const BROWSER_ACTION_TIMEOUT_MS = 15_000;
/** Time allowed to start Chromium. */
const LAUNCH_TIMEOUT_MS = 30_000;

/** How the session is set up. */
export interface BrowserSessionOptions {
  /** The Chromium executable. */
  executablePath: string;
  /** Hosts pages may load from; empty means any public host. Ports are not part of the match. */
  allowedHosts: string[];
  /** Chromium's environment (already without secrets). */
  env: NodeJS.ProcessEnv;
  navigationTimeoutMs?: number;
  actionTimeoutMs?: number;
  /** Resolves a host name to its addresses; DNS unless given (tests). */
  resolve?(host: string): Promise<string[]>;
  /** Extra Chromium flags (tests). */
  args?: string[];
}

/** One request the session did not let through, for the tool's answer. */
export interface BlockedRequest {
  /** `scheme://host` (the proxy sees no more of https). */
  url: string;
  host: string;
  reason: string;
}

async function defaultResolve(host: string): Promise<string[]> {
  const found = await lookup(host, { all: true });
  return found.map((a) => a.address);
}

/** Kept short in answers: a data: URL or a long query string says nothing more after this. */
function hostOf(url: URL): string {
  return url.hostname
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "")
    .toLowerCase();
}

/**
 * One Chromium for one toolbox. Not thread-safe across ticks: the toolbox
 * runs one tick at a time.
 */
export class BrowserSession {
  private browser: Promise<Browser> | null = null;
  private proxy: EgressProxy | null = null;
  private context: Promise<BrowserContext> | null = null;
  private current: Page | null = null;
  /** The call being run, whose `authorize` decides hosts not yet decided. */
  private active: ToolContext | null = null;
  /** Per context: host → allowed (after the rules, and the operator for `ask`). */
  private decided = new Map<string, Promise<boolean>>();
  private blockedSince: BlockedRequest[] = [];
  private readonly resolve: (host: string) => Promise<string[]>;
  readonly navigationTimeoutMs: number;
  readonly actionTimeoutMs: number;

  constructor(private readonly options: BrowserSessionOptions) {
    this.resolve = options.resolve ?? defaultResolve;
    this.navigationTimeoutMs = options.navigationTimeoutMs ?? BROWSER_NAVIGATION_TIMEOUT_MS;
    this.actionTimeoutMs = options.actionTimeoutMs ?? BROWSER_ACTION_TIMEOUT_MS;
  }

  /**
   * The settings' verdict on a host (allowed hosts, or no private address
   * without a list): the address to connect to, or why not. The
   * `browse(HOST)` rules come after this.
   */
  async hostVerdict(host: string): Promise<EgressVerdict> {
    const allowed = this.options.allowedHosts;
    if (allowed.length > 0 && !hostAllowed(host, allowed)) {
      return { refused: `the host ${host} is not in the allowed hosts (${allowed.join(", ")})` };
    }
    let addresses: string[];
    if (isIP(host)) addresses = [host];
    else if (host === "localhost" || host.endsWith(".localhost")) addresses = ["127.0.0.1"];
    else addresses = await this.resolve(host).catch(() => []);
    if (addresses.length === 0) return { refused: `the host ${host} does not resolve` };
    const inner = addresses.find(isPrivateAddress);
    if (allowed.length === 0 && inner) {
      return {
        refused: `${host} is a loopback, private or link-local address (${inner}); the browser reaches only public hosts unless allowed_hosts lists it`,
      };
    }
    return { address: addresses[0] as string };
  }

  /**
   * Checks a URL the model asked to open: http(s) only, the settings, then
   * the `browse(HOST)` rules through the call's gate (which may ask the
   * operator).
   *
   * @throws {@link PolicyRefusal} saying why.
   */
  async authorizeNavigation(url: URL, ctx: ToolContext): Promise<void> {
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new PolicyRefusal(
        `Refused: the browser opens only http:// and https:// URLs, not ${url.protocol}`,
        "scheme",
      );
    }
    const host = hostOf(url);
    const verdict = await this.hostVerdict(host);
    if ("refused" in verdict)
      throw new PolicyRefusal(`Refused: ${verdict.refused}.`, "allowed_hosts");
    const decision = (async () => {
      await ctx.authorize?.({ kind: "browse", target: url.href });
      return true;
    })();
    this.decided.set(
      host,
      decision.catch(() => false),
    );
    await decision;
  }

  /** The proxy's check: the settings, then the rules (asked during a call, else only hosts already decided). */
  private async egress(host: string, scheme: "http" | "https"): Promise<EgressVerdict> {
    const where = `${scheme}://${host.includes(":") ? `[${host}]` : host}`;
    const verdict = await this.hostVerdict(host);
    if ("refused" in verdict) {
      this.blockedSince.push({ url: where, host, reason: verdict.refused });
      return verdict;
    }
    let decision = this.decided.get(host);
    if (!decision) {
      const ctx = this.active;
      if (!ctx) {
        const reason = "a host not yet allowed, requested between tool calls";
        this.blockedSince.push({ url: where, host, reason });
        return { refused: reason };
      }
      decision = (async () => {
        await ctx.authorize?.({ kind: "browse", target: `${where}/` });
        return true;
      })().catch(() => false);
      this.decided.set(host, decision);
    }
    if (await decision) return verdict;
    const reason = `the browse rules refuse ${host}`;
    this.blockedSince.push({ url: where, host, reason });
    return { refused: reason };
  }

  private launch(): Promise<Browser> {
    if (!this.browser) {
      const started = (async () => {
        const { chromium } = await import("playwright-core");
        const proxy = await startEgressProxy((host, scheme) => this.egress(host, scheme));
        this.proxy = proxy;
        const browser = await chromium
          .launch({
            // Loopback too: playwright adds <-loopback> to the bypass list.
            proxy: { server: proxy.url },
            executablePath: this.options.executablePath,
            headless: true,
            args: [
              ...chromiumArgs(),
              // No WebRTC UDP around the proxy; no DNS prefetch for unchecked hosts.
              "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
              "--dns-prefetch-disable",
              ...(this.options.args ?? []),
            ],
            env: this.options.env,
            timeout: LAUNCH_TIMEOUT_MS,
            // The run stops on these signals and closes the browser itself;
            // an exit of the process kills it (playwright's exit hook).
            handleSIGINT: false,
            handleSIGTERM: false,
            handleSIGHUP: false,
          })
          .catch(async (error: unknown) => {
            await proxy.close();
            if (this.proxy === proxy) this.proxy = null;
            throw error;
          });
        browser.on("disconnected", () => {
          // Crashed or killed: the next call starts a new one.
          if (this.browser === started) {
            this.reset();
            this.proxy = null;
            void proxy.close();
          }
        });
        return browser;
      })();
      this.browser = started;
      started.catch(() => {
        if (this.browser === started) this.browser = null;
      });
    }
    return this.browser;
  }

  private reset(): void {
    this.browser = null;
    this.context = null;
    this.current = null;
    this.decided = new Map();
  }

  private openContext(): Promise<BrowserContext> {
    if (!this.context) {
      const made = (async () => {
        const browser = await this.launch();
        const context = await browser.newContext({
          acceptDownloads: false,
          serviceWorkers: "block",
          javaScriptEnabled: true,
          permissions: [],
        });
        context.setDefaultTimeout(this.actionTimeoutMs);
        context.setDefaultNavigationTimeout(this.navigationTimeoutMs);
        // A popup (target=_blank, window.open) becomes the current page.
        context.on("page", (page) => {
          this.current = page;
        });
        return context;
      })();
      this.context = made;
      made.catch(() => {
        if (this.context === made) this.context = null;
      });
    }
    return this.context;
  }

  /**
   * Runs one action with the call's context active, aborting it (by closing
   * the tick's context) when the call is aborted.
   */
  async run<T>(ctx: ToolContext, action: (session: this) => Promise<T>): Promise<T> {
    this.active = ctx;
    this.blockedSince = [];
    const signal = ctx.signal;
    let onAbort: (() => void) | undefined;
    try {
      if (!signal) return await action(this);
      signal.throwIfAborted();
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => {
          void this.endTick();
          reject(new Error("Aborted: the tick was stopped."));
        };
        signal.addEventListener("abort", onAbort, { once: true });
      });
      return await Promise.race([action(this), aborted]);
    } finally {
      if (onAbort) signal?.removeEventListener("abort", onAbort);
      this.active = null;
    }
  }

  /** The requests blocked during the current action. */
  blocked(): BlockedRequest[] {
    return [...this.blockedSince];
  }

  /** The page actions work on: the last one opened, a new one when there is none. */
  async page(create: boolean): Promise<Page | null> {
    if (this.current && !this.current.isClosed()) return this.current;
    if (!create) return null;
    const context = await this.openContext();
    const pages = context.pages().filter((p) => !p.isClosed());
    this.current = pages.at(-1) ?? (await context.newPage());
    return this.current;
  }

  /** Whether Chromium is running (tests). */
  get running(): boolean {
    return this.browser !== null;
  }

  /** Ends the tick: closes its context and the browser (a sleeping heartbeat holds no Chromium). */
  async endTick(): Promise<void> {
    const browser = this.browser;
    const proxy = this.proxy;
    this.reset();
    this.proxy = null;
    if (browser) await browser.then((b) => b.close()).catch(() => undefined);
    await proxy?.close();
  }

  /** Closes everything; the session may be used again afterwards (it relaunches). */
  close(): Promise<void> {
    return this.endTick();
  }
}
