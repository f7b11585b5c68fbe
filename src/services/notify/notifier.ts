/**
 * Delivers notification events without ever holding up the heartbeat:
 * `emit` returns at once; deliveries run in the background with a timeout
 * per attempt and retries with backoff; at most one event per kind per
 * heartbeat per minute leaves (later ones within the minute are merged into
 * one, sent when the minute is over); every delivery is journaled
 * (`notify`, or `notify-failed` after the last attempt); `close` gives what is
 * still pending a bounded time before the process ends.
 */
import type { NotifyEventKind } from "../../settings.js";
import type { Redactor } from "../redact.js";
import type { NotifyEvent } from "./event.js";
import { DeliveryError, type Transport } from "./transports.js";

/** Time as the notifier sees it; tests inject one they move by hand. */
export interface NotifyClock {
  now(): number;
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock (timers unref'd: a pending notification never keeps the process alive by itself). */
export const systemClock: NotifyClock = {
  now: () => Date.now(),
  setTimeout: (run, ms) => setTimeout(run, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** What the notifier journals: one line per delivery, delivered or given up. */
export interface NotifyJournalEntry {
  type: "notify" | "notify-failed";
  at: string;
  event: NotifyEventKind;
  heartbeatId: string;
  tick: number;
  transport: Transport["kind"];
  /** The URL's origin, or `command`. */
  target: string;
  attempts: number;
  /** Events merged into this one (see {@link NotifyEvent.coalesced}). */
  coalesced?: number;
  /** `notify-failed`: the last attempt's error. */
  error?: string;
  [key: string]: unknown;
}

/** Options of {@link createNotifier}. */
export interface NotifierOptions {
  transports: Transport[];
  /** The events that are sent; others are dropped at `emit`. */
  on: readonly NotifyEventKind[];
  /** Applied to every payload and journal line (API key, notify token). */
  redact: Redactor;
  /** Appends a journal line; its failure is ignored (and never stops the heartbeat). */
  journal?(entry: NotifyJournalEntry): Promise<void> | void;
  /** Tells the person at the terminal that a delivery failed. */
  warn?(text: string): void;
  clock?: NotifyClock;
  /** Waits before the 2nd, 3rd and 4th attempt. Default 1 s, 2 s, 4 s. */
  retryDelaysMs?: readonly number[];
  /** One event per kind per heartbeat in this window. Default one minute. */
  windowMs?: number;
  /** How long `close` waits for pending deliveries. Default 15 s. */
  closeTimeoutMs?: number;
}

/** Sends events; see the module comment. */
export interface Notifier {
  /** Queues an event; never throws, never waits. */
  emit(event: NotifyEvent): void;
  /**
   * Sends what the coalescing window holds back at once, then waits for the
   * deliveries in flight, at most `closeTimeoutMs`; those still unfinished
   * are cancelled and journaled as failed. Later `emit`s are dropped.
   */
  close(): Promise<void>;
}

/** Default waits between attempts: 3 retries with exponential backoff. */
export const RETRY_DELAYS_MS = [1_000, 2_000, 4_000] as const;
/** One event per kind per heartbeat per minute. */
export const COALESCE_WINDOW_MS = 60_000;
/** The longest `close` waits for deliveries. */
export const CLOSE_TIMEOUT_MS = 15_000;

interface Slot {
  /** When the last delivery of this kind started. */
  lastSentAt: number | null;
  held: NotifyEvent | null;
  timer: unknown;
}

/** Creates a notifier over the given transports. */
export function createNotifier(options: NotifierOptions): Notifier {
  const clock = options.clock ?? systemClock;
  const delays = options.retryDelaysMs ?? RETRY_DELAYS_MS;
  const windowMs = options.windowMs ?? COALESCE_WINDOW_MS;
  const closeTimeoutMs = options.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
  const on = new Set(options.on);
  const slots = new Map<string, Slot>();
  const inflight = new Set<Promise<void>>();
  const exit = new AbortController();
  let closed = false;

  const journaling = new Set<Promise<void>>();
  const record = (entry: NotifyJournalEntry) => {
    try {
      const done = options.journal?.(entry);
      if (done) {
        const job: Promise<void> = done.catch(() => {}).finally(() => journaling.delete(job));
        journaling.add(job);
      }
    } catch {
      // The journal is best effort here: a notification never fails the heartbeat.
    }
  };

  /** Resolves after `ms` on the notifier's clock, or at once when `close` gives up. */
  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      if (exit.signal.aborted) return resolve();
      const handle = clock.setTimeout(() => {
        exit.signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clock.clearTimeout(handle);
        resolve();
      };
      exit.signal.addEventListener("abort", onAbort, { once: true });
    });

  async function deliverVia(transport: Transport, event: NotifyEvent, body: string) {
    // The journal fields of this delivery, whatever its end.
    const delivery = (attempts: number) => ({
      at: new Date(clock.now()).toISOString(),
      event: event.event,
      heartbeatId: event.heartbeatId,
      tick: event.tick,
      transport: transport.kind,
      target: transport.target,
      attempts,
      ...(event.coalesced ? { coalesced: event.coalesced } : {}),
    });
    let attempts = 0;
    let last = "";
    for (;;) {
      attempts++;
      try {
        await transport.send(body, exit.signal);
        record({ type: "notify", ...delivery(attempts) });
        return;
      } catch (error) {
        last = options.redact(error instanceof Error ? error.message : String(error));
        const retryable = error instanceof DeliveryError ? error.retryable : true;
        if (!retryable || attempts > delays.length || exit.signal.aborted) break;
        await wait(delays[attempts - 1] ?? 0);
        if (exit.signal.aborted) break;
      }
    }
    record({ type: "notify-failed", ...delivery(attempts), error: last });
    options.warn?.(
      options.redact(
        `ravenclaws: the ${event.event} notification (${transport.kind === "url" ? transport.target : "--notify-command"}) failed after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${last}`,
      ),
    );
  }

  function deliver(event: NotifyEvent) {
    const body = options.redact(JSON.stringify(event));
    for (const transport of options.transports) {
      const job: Promise<void> = deliverVia(transport, event, body)
        .catch(() => {})
        .finally(() => inflight.delete(job));
      inflight.add(job);
    }
  }

  function flush(key: string) {
    const slot = slots.get(key);
    if (!slot) return;
    slot.timer = null;
    const event = slot.held;
    if (!event) return;
    slot.held = null;
    slot.lastSentAt = clock.now();
    deliver(event);
  }

  return {
    emit(event) {
      if (closed || !on.has(event.event) || options.transports.length === 0) return;
      const key = `${event.heartbeatId}\u0000${event.event}`;
      const slot = slots.get(key) ?? { lastSentAt: null, held: null, timer: null };
      slots.set(key, slot);
      const now = clock.now();
      if (slot.held === null && (slot.lastSentAt === null || now - slot.lastSentAt >= windowMs)) {
        slot.lastSentAt = now;
        deliver(event);
        return;
      }
      // Within the window: the later event is kept, counting those it replaces.
      const replaced = slot.held ? 1 + (slot.held.coalesced ?? 0) : 0;
      slot.held = { ...event, coalesced: replaced + (event.coalesced ?? 0) || undefined };
      if (slot.held.coalesced === undefined) delete slot.held.coalesced;
      if (slot.timer === null) {
        const due = Math.max(0, (slot.lastSentAt ?? now) + windowMs - now);
        slot.timer = clock.setTimeout(() => flush(key), due);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const [key, slot] of slots) {
        if (slot.timer !== null) clock.clearTimeout(slot.timer);
        flush(key);
      }
      if (inflight.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        const gaveUp = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, closeTimeoutMs);
        });
        await Promise.race([Promise.allSettled([...inflight]), gaveUp]);
        clearTimeout(timer);
        if (inflight.size > 0) {
          exit.abort();
          await Promise.allSettled([...inflight]);
        }
      }
      // The journal lines of these deliveries are written before the lock is let go.
      await Promise.allSettled([...journaling]);
    },
  };
}
