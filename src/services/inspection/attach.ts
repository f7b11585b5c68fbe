/**
 * Inspection attached to a run: the offline log and/or a WebSocket
 * inspector (`@statelyai/inspect`) connected to our inspector server, behind
 * one observer for `createActor(…, { inspect })`.
 */
import {
  createInspector,
  createWebSocketInspector,
  type StatelyInspectionEvent,
} from "@statelyai/inspect";
import { WebSocket } from "ws";
import type { InspectionEvent, Observer } from "xstate";
import type { Redactor } from "../redact.js";
import { JsonLinesAdapter } from "./log.js";
import type { InspectionRequest } from "./request.js";
import { sanitizeInspectionEvent } from "./sanitize.js";
import { type InspectorServer, openInBrowser, startInspectorServer } from "./server.js";

/** Inspection attached to a run. */
export interface Inspection {
  /** Pass to `createActor(…, { inspect })`: it sees the heartbeat and all its children. */
  inspect: Observer<InspectionEvent>;
  /** The page to open, when inspecting live. */
  url: string | null;
  /** Sends what is still queued, then closes the log, the inspector socket and the server. */
  close(): Promise<void>;
}

type WebSocketInspector = ReturnType<typeof createWebSocketInspector>;

/** The adapter's socket; `@statelyai/inspect` 0.7.2 keeps it in a private field. */
function socketOf(inspector: WebSocketInspector): WebSocket | undefined {
  return (inspector.adapter as unknown as { ws?: WebSocket }).ws;
}

const nextMacrotask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

async function waitFor(test: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

/**
 * Starts the inspection a run asked for: the offline log, and/or the
 * inspector server with a WebSocket inspector connected to it. The URL is
 * reported through `note`.
 */
export async function startInspection(
  request: InspectionRequest,
  options: { redact: Redactor; note: (text: string) => void },
): Promise<Inspection> {
  const sanitize = { redact: options.redact };
  const serialize = (event: StatelyInspectionEvent) => sanitizeInspectionEvent(event, sanitize);
  const inspectors: Array<{ inspect: Observer<InspectionEvent> }> = [];

  let log: ReturnType<typeof createInspector<JsonLinesAdapter>> | null = null;
  if (request.logFile) {
    const adapter = new JsonLinesAdapter(request.logFile, {
      ...sanitize,
      onError: (error) =>
        options.note(
          `ravenclaws: warning: writing the inspection log ${request.logFile} failed (${(error as Error).message}); it stops here.`,
        ),
    });
    log = createInspector(adapter, { serialize });
    inspectors.push(log);
  }

  let server: InspectorServer | null = null;
  let live: WebSocketInspector | null = null;
  if (request.live) {
    try {
      server = await startInspectorServer({ port: request.live.port });
    } catch (error) {
      log?.stop();
      throw error;
    }
    live = createWebSocketInspector({ url: server.wsUrl, serialize, maxDeferredEvents: 1_000 });
    // Connect before the heartbeat starts, so the retry loop of the adapter
    // (it reconnects forever after an error) never gets going.
    const ws = live;
    await waitFor(() => socketOf(ws)?.readyState === WebSocket.OPEN, 2_000);
    inspectors.push(live);
    options.note(
      `ravenclaws: inspector at ${server.url} (open it in a browser${request.live.open ? "" : ", or pass --open"})`,
    );
    if (request.live.open) void openInBrowser(server.url);
  }

  let closing: Promise<void> | null = null;
  return {
    url: server?.url ?? null,
    inspect: {
      next: (event) => {
        for (const inspector of inspectors) inspector.inspect.next?.(event);
      },
    },
    close() {
      closing ??= (async () => {
        // The inspectors convert events in a later macrotask: let the last ones through.
        await nextMacrotask();
        await nextMacrotask();
        log?.stop();
        if (live) {
          const socket = socketOf(live);
          if (socket?.readyState === WebSocket.OPEN) {
            await waitFor(() => socket.bufferedAmount === 0, 1_000);
          }
          if (socket) {
            // Without this the adapter would schedule a reconnect when the socket closes with an error.
            socket.onerror = () => {};
            socket.onclose = () => {};
            if (socket.readyState === WebSocket.OPEN) {
              const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
              socket.close();
              await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 500))]);
            }
            socket.terminate();
          }
        }
        await server?.close();
      })();
      return closing;
    },
  };
}
