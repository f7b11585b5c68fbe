/**
 * `GET /api/events`: the host's events as Server-Sent Events (`state`,
 * `tick`, `tool`, `approval`, `heartbeat`), with keep-alive comments. A client
 * that disconnects, or reads too slowly, is released.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { HostEvent } from "../host/types.js";
import type { Redactor } from "../services/redact.js";
import type { ApiEvent, TickJournalEntry } from "./api.types.js";
import { summaryOf } from "./views.js";

/** The API events one host event becomes (none for what the API does not publish). */
export function apiEventsOf(event: HostEvent): ApiEvent[] {
  switch (event.type) {
    case "heartbeat.added":
      return [
        {
          type: "heartbeat",
          data: { kind: "added", id: event.id, heartbeat: summaryOf(event.summary) },
        },
      ];
    case "heartbeat.removed":
      return [{ type: "heartbeat", data: { kind: "removed", id: event.id } }];
    case "state": {
      const heartbeat = summaryOf(event.summary);
      return [
        { type: "state", data: { id: event.id, state: heartbeat.state, at: event.at, heartbeat } },
      ];
    }
    case "tick": {
      const heartbeat = summaryOf(event.summary);
      const ticks = event.entries.filter((e) => e.type === "tick");
      const out: ApiEvent[] = ticks.map((entry) => ({
        type: "tick",
        data: { id: event.id, entry: entry as unknown as TickJournalEntry, heartbeat },
      }));
      // A persist without a tick line (a start, a stop, an end) still changes the row.
      if (out.length === 0)
        out.push({ type: "heartbeat", data: { kind: "updated", id: event.id, heartbeat } });
      return out;
    }
    case "tool":
      return [
        {
          type: "tool",
          data: {
            id: event.id,
            tick: event.tick,
            callId: event.call.callId,
            name: event.call.name,
            status: event.call.status,
            at: event.at,
          },
        },
      ];
    case "approval":
      return [
        {
          type: "approval",
          data: {
            id: event.id,
            kind: event.decision === "pending" ? "pending" : "decided",
            callId: event.callId,
            ...(typeof (event as unknown as { tool?: unknown }).tool === "string"
              ? { tool: (event as unknown as { tool: string }).tool }
              : {}),
            ...(event.decision === "pending" ? {} : { decision: event.decision }),
            at: event.at,
          },
        },
      ];
    default:
      return [];
  }
}

/** The wire form of one event. */
export function formatEvent(event: ApiEvent, redact: Redactor): string {
  return `event: ${event.type}\ndata: ${redact(JSON.stringify(event.data))}\n\n`;
}

/** Options of {@link EventHub}. */
export interface EventHubOptions {
  redact: Redactor;
  /** Milliseconds between keep-alive comments (default 15 s). */
  keepAliveMs?: number;
  /** A client with more than this many bytes queued is dropped (default 4 MB). */
  maxBufferedBytes?: number;
}

/** The connected event-stream clients. */
export class EventHub {
  readonly #clients = new Set<ServerResponse>();
  readonly #redact: Redactor;
  readonly #maxBuffered: number;
  readonly #timer: NodeJS.Timeout;

  constructor(options: EventHubOptions) {
    this.#redact = options.redact;
    this.#maxBuffered = options.maxBufferedBytes ?? 4 * 1024 * 1024;
    this.#timer = setInterval(() => this.#write(": keep-alive\n\n"), options.keepAliveMs ?? 15_000);
    this.#timer.unref();
  }

  /** Clients connected now. */
  get size(): number {
    return this.#clients.size;
  }

  /** Turns a request into an event stream; it stays open until the client leaves or {@link close}. */
  attach(req: IncomingMessage, res: ServerResponse): void {
    res.statusCode = 200;
    res.setHeader("Content-Type", "text/event-stream; charset=utf-8");
    res.setHeader("Cache-Control", "no-store");
    res.setHeader("Connection", "keep-alive");
    res.setHeader("X-Accel-Buffering", "no");
    res.flushHeaders();
    req.socket.setNoDelay(true);
    req.socket.setTimeout(0);
    res.write("retry: 3000\n: connected\n\n");
    this.#clients.add(res);
    const release = () => this.#clients.delete(res);
    req.on("close", release);
    res.on("close", release);
    res.on("error", release);
  }

  /** Sends one host event to every client. */
  publish(event: HostEvent): void {
    if (this.#clients.size === 0) return;
    for (const apiEvent of apiEventsOf(event)) this.#write(formatEvent(apiEvent, this.#redact));
  }

  #write(text: string): void {
    for (const res of this.#clients) {
      if (res.writableLength > this.#maxBuffered) {
        // Too slow to keep up: let it reconnect rather than hold memory for it.
        this.#clients.delete(res);
        res.destroy();
        continue;
      }
      res.write(text);
    }
  }

  /** Ends every stream and the keep-alive timer. */
  close(): void {
    clearInterval(this.#timer);
    for (const res of this.#clients) res.end();
    this.#clients.clear();
  }
}
