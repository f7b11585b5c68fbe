/**
 * Watching a heartbeat: live in the Stately inspector (`run --inspect`), and
 * offline as a JSON-lines log of the same inspection events (`run
 * --inspect-log FILE`), which `inspect replay FILE` serves to the inspector
 * later. Everything that leaves the process goes through {@link sanitizeInspectionEvent}:
 * secrets redacted, large strings and arrays truncated.
 *
 * The live path is `@statelyai/inspect`'s `createWebSocketInspector` talking
 * to a small inspector server of ours on 127.0.0.1. Ours rather than
 * `createInspectorServer` from `@statelyai/inspect/server` (0.7.2) because that
 * one listens on every interface (the agent's goal, progress and tool output
 * would be readable from the network), cannot use port 0 (its bridge page
 * embeds the port it was given), crashes the process when the port is taken
 * (its server has no error listener we can reach), keeps only the last 200
 * events (a replayed log would lose its first events, the actor definitions),
 * and does not close open connections when stopped. The wire protocol is the
 * same: every message a client sends is kept and relayed to the other
 * clients, and a bridge page relays them into the Stately inspector iframe.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import * as fs from "node:fs/promises";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import {
  createInspector,
  createWebSocketInspector,
  type StatelyInspectionEvent,
} from "@statelyai/inspect";
import { WebSocket, WebSocketServer } from "ws";
import type { InspectionEvent, Observer } from "xstate";
import { UsageError } from "../errors.js";
import { noRedaction, type Redactor } from "./redact.js";

/** Longest string kept in an inspection event, in characters (the rest is cut). */
export const INSPECT_STRING_LIMIT = 2_048;
/** Most array items kept in an inspection event. */
export const INSPECT_ARRAY_LIMIT = 50;
/** Deepest nesting kept in an inspection event. */
export const INSPECT_DEPTH_LIMIT = 16;
/** The inspector page the bridge embeds. */
export const STATELY_INSPECTOR_URL = "https://stately.ai/inspect";
/** Port of the inspector server unless `--inspect-port` says otherwise (Stately's default). */
export const DEFAULT_INSPECT_PORT = 8080;
/** The three event types of Stately's inspection format. */
export const INSPECTION_EVENT_TYPES = [
  "@xstate.actor",
  "@xstate.snapshot",
  "@xstate.event",
] as const;

/** How inspection values are cleaned before they leave the process. */
export interface SanitizeOptions {
  redact?: Redactor;
  maxString?: number;
  maxArray?: number;
  maxDepth?: number;
}

function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  // The result stays within `max`, so sanitizing twice changes nothing.
  let kept = max;
  let marker = "";
  for (let i = 0; i < 3; i++) {
    marker = `… [${text.length - kept} more characters]`;
    kept = Math.max(0, max - marker.length);
  }
  return `${text.slice(0, kept)}${marker}`;
}

/**
 * A plain JSON copy of `value`: every string redacted (before it is cut, so a
 * cut can never leave half a secret) and at most `maxString` long, arrays cut
 * to `maxArray` items, cycles and over-deep nesting replaced by markers,
 * `toJSON` honoured (actor references, dates), errors reduced to name and
 * message.
 */
export function sanitizeValue(value: unknown, options: SanitizeOptions = {}): unknown {
  const redact = options.redact ?? noRedaction;
  const maxString = options.maxString ?? INSPECT_STRING_LIMIT;
  const maxArray = options.maxArray ?? INSPECT_ARRAY_LIMIT;
  const maxDepth = options.maxDepth ?? INSPECT_DEPTH_LIMIT;
  const ancestors = new Set<object>();

  const walk = (v: unknown, depth: number): unknown => {
    switch (typeof v) {
      case "string":
        return truncate(redact(v), maxString);
      case "number":
        return Number.isFinite(v) ? v : null;
      case "boolean":
        return v;
      case "bigint":
        return v.toString();
      case "undefined":
      case "function":
      case "symbol":
        return undefined;
    }
    if (v === null) return null;
    const obj = v as object;
    if (ancestors.has(obj)) return "[Circular]";
    if (depth >= maxDepth) return "[Truncated: too deep]";
    ancestors.add(obj);
    try {
      if (obj instanceof Error) {
        const code = (obj as { code?: unknown }).code;
        return {
          name: obj.name,
          message: walk(obj.message, depth + 1),
          ...(code !== undefined ? { code: walk(code, depth + 1) } : {}),
        };
      }
      if (typeof (obj as { toJSON?: unknown }).toJSON === "function") {
        return walk((obj as { toJSON(): unknown }).toJSON(), depth);
      }
      const items = obj instanceof Set ? [...obj] : Array.isArray(obj) ? obj : null;
      if (items) {
        const out = items.slice(0, maxArray).map((item) => walk(item, depth + 1) ?? null);
        if (items.length > maxArray) out.push(`… [${items.length - maxArray} more items]`);
        return out;
      }
      const entries = obj instanceof Map ? [...obj.entries()] : Object.entries(obj);
      const out: Record<string, unknown> = {};
      for (const [key, item] of entries) {
        const clean = walk(item, depth + 1);
        if (clean !== undefined) out[redact(String(key))] = clean;
      }
      return out;
    } finally {
      ancestors.delete(obj);
    }
  };
  return walk(value, 0);
}

/**
 * Cleans one Stately inspection event for a log or the inspector: secrets
 * redacted everywhere; context, events and outputs truncated. The machine
 * `definition` of an actor event is kept whole (the inspector draws the
 * statechart from it) but redacted.
 */
export function sanitizeInspectionEvent(
  event: StatelyInspectionEvent,
  options: SanitizeOptions = {},
): StatelyInspectionEvent {
  const redact = options.redact ?? noRedaction;
  const { definition, ...rest } = event as StatelyInspectionEvent & { definition?: unknown };
  const clean = sanitizeValue(rest, options) as Record<string, unknown>;
  if (typeof definition === "string") clean.definition = redact(definition);
  return clean as unknown as StatelyInspectionEvent;
}

/** One log line (without the newline) for an inspection event. */
export function serializeInspectionEvent(
  event: StatelyInspectionEvent,
  options: SanitizeOptions = {},
): string {
  const redact = options.redact ?? noRedaction;
  // Redacting the whole line again also covers anything the event walk could not see.
  return redact(JSON.stringify(sanitizeInspectionEvent(event, options)));
}

/** An inspection adapter that appends one JSON line per event to a file. */
export class JsonLinesAdapter {
  private fd: number | null;
  private failed = false;

  /** Opens (creates or appends to) `file`; throws a {@link UsageError} when it cannot. */
  constructor(
    readonly file: string,
    private readonly options: SanitizeOptions & { onError?: (error: unknown) => void } = {},
  ) {
    try {
      this.fd = openSync(file, "a", 0o600);
    } catch (error) {
      throw new UsageError(`Cannot open the inspection log ${file}: ${(error as Error).message}`, {
        option: "--inspect-log",
        code: "inspect-log-unwritable",
        hint: "Pass a file in an existing, writable directory.",
      });
    }
  }

  send(event: StatelyInspectionEvent): void {
    if (this.fd === null || this.failed) return;
    try {
      writeSync(this.fd, `${serializeInspectionEvent(event, this.options)}\n`);
    } catch (error) {
      // Inspection must never bring the heartbeat down: report once and stop logging.
      this.failed = true;
      this.options.onError?.(error);
    }
  }

  /** Closes the file. */
  stop(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------
// Inspector server
// ---------------------------------------------------------------------------

/** The inspector server: a bridge page plus a WebSocket relay on 127.0.0.1. */
export interface InspectorServer {
  /** The page to open in a browser. */
  readonly url: string;
  /** Where inspectors connect (`createWebSocketInspector({ url })`). */
  readonly wsUrl: string;
  readonly port: number;
  /** Keeps a message for clients that connect later and sends it to those connected. */
  publish(message: string): void;
  /** Resolves once a client has been sent every message kept at the time it connected. */
  served(): Promise<void>;
  /** Closes every connection and the server. */
  close(): Promise<void>;
}

/** How many messages the server keeps for clients that connect later. */
export interface RetainLimits {
  /** `@xstate.actor` messages (they carry the definitions). Default 500. */
  actors?: number;
  /** All other messages. Default 5000. */
  events?: number;
}

function bridgePage(wsUrl: string): string {
  return `<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>ravenclaws: Stately inspector</title>
  <style>html, body { margin: 0; height: 100%; } iframe { border: 0; width: 100%; height: 100%; }</style>
</head>
<body>
  <iframe id="inspector" src="${STATELY_INSPECTOR_URL}"></iframe>
  <script>
    const frame = document.getElementById("inspector");
    const pending = [];
    let connected = false;
    window.addEventListener("message", (e) => {
      if (e.data && e.data.type === "@statelyai.connected") {
        connected = true;
        for (const event of pending.splice(0)) frame.contentWindow.postMessage(event, "*");
      }
    });
    const ws = new WebSocket(${JSON.stringify(wsUrl)});
    ws.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (connected) frame.contentWindow.postMessage(event, "*");
      else pending.push(event);
    };
  </script>
</body>
</html>
`;
}

const isActorMessage = (message: string) => message.includes('"type":"@xstate.actor"');

/**
 * Starts the inspector server on 127.0.0.1. Port 0 picks a free port. A port
 * in use is a {@link UsageError} naming `--inspect-port`.
 */
export async function startInspectorServer(
  options: { port?: number; retain?: RetainLimits; portOption?: string } = {},
): Promise<InspectorServer> {
  const host = "127.0.0.1";
  const maxActors = options.retain?.actors ?? 500;
  const maxEvents = options.retain?.events ?? 5_000;
  const actors: Array<{ seq: number; message: string }> = [];
  const events: Array<{ seq: number; message: string }> = [];
  let seq = 0;
  let port = options.port ?? DEFAULT_INSPECT_PORT;
  let page = "";
  const servedWaiters: Array<() => void> = [];
  let servedOnce = false;

  const http = createServer((req, res) => {
    if (req.method === "GET" && (req.url === "/" || req.url?.startsWith("/?"))) {
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
      });
      res.end(page);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found\n");
  });
  // Browsers send an Origin: only our own bridge page may connect, not any site the user visits.
  const allowedOrigin = (req: IncomingMessage) => {
    const origin = req.headers.origin;
    return (
      origin === undefined ||
      origin === `http://${host}:${port}` ||
      origin === `http://localhost:${port}`
    );
  };
  const wss = new WebSocketServer({
    server: http,
    verifyClient: ({ req }: { req: IncomingMessage }) => allowedOrigin(req),
  });

  // The WebSocket server re-emits the HTTP server's errors; listening fails through `onError` below.
  wss.on("error", () => {});

  const kept = () => {
    const all = [...actors, ...events].sort((a, b) => a.seq - b.seq);
    return all.map((entry) => entry.message);
  };
  const publish = (message: string, from?: WebSocket) => {
    const list = isActorMessage(message) ? actors : events;
    list.push({ seq: seq++, message });
    if (list.length > (list === actors ? maxActors : maxEvents)) list.shift();
    for (const client of wss.clients) {
      if (client !== from && client.readyState === WebSocket.OPEN) client.send(message);
    }
  };

  wss.on("connection", (ws) => {
    ws.on("error", () => {});
    const backlog = kept();
    let left = backlog.length;
    const done = () => {
      if (servedOnce) return;
      servedOnce = true;
      for (const resolve of servedWaiters.splice(0)) resolve();
    };
    if (left === 0) done();
    for (const message of backlog) {
      ws.send(message, () => {
        left -= 1;
        if (left === 0) done();
      });
    }
    ws.on("message", (data) => publish(data.toString(), ws));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      http.off("listening", onListening);
      wss.close();
      reject(
        error.code === "EADDRINUSE" || error.code === "EACCES"
          ? new UsageError(
              `The inspector cannot listen on ${host}:${port}: ${error.code === "EADDRINUSE" ? "the port is in use" : "permission denied"}.`,
              {
                option: options.portOption ?? "--inspect-port",
                code: "inspect-port-unavailable",
                hint: `Pass another port with ${options.portOption ?? "--inspect-port"}, or 0 for any free port.`,
              },
            )
          : error,
      );
    };
    const onListening = () => {
      http.off("error", onError);
      resolve();
    };
    http.once("error", onError);
    http.once("listening", onListening);
    http.listen(port, host);
  });
  // Errors after startup (a client misbehaving) must not crash the heartbeat.
  http.on("error", () => {});
  port = (http.address() as AddressInfo).port;
  const url = `http://${host}:${port}/`;
  const wsUrl = `ws://${host}:${port}`;
  page = bridgePage(wsUrl);

  let closing: Promise<void> | null = null;
  return {
    url,
    wsUrl,
    port,
    publish: (message) => publish(message),
    served: () =>
      servedOnce ? Promise.resolve() : new Promise<void>((resolve) => servedWaiters.push(resolve)),
    close() {
      closing ??= (async () => {
        for (const client of wss.clients) client.terminate();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        http.closeAllConnections();
        await new Promise<void>((resolve) => http.close(() => resolve()));
      })();
      return closing;
    },
  };
}

/**
 * Opens `url` in the default browser. Failures are ignored (the URL is
 * printed anyway): callers need not wait; the promise, which never rejects,
 * says once it is known whether an opener started (true) or there is none (false).
 */
export function openInBrowser(
  url: string,
  platform: NodeJS.Platform = process.platform,
): Promise<boolean> {
  const [command, args] =
    platform === "darwin"
      ? ["open", [url]]
      : platform === "win32"
        ? ["cmd", ["/c", "start", "", url]]
        : ["xdg-open", [url]];
  return new Promise((resolve) => {
    try {
      const child = spawn(command, args, { detached: true, stdio: "ignore" });
      // No opener on this system: the printed URL is enough.
      child.once("error", () => resolve(false));
      child.once("spawn", () => resolve(true));
      child.unref();
    } catch {
      resolve(false);
    }
  });
}

// ---------------------------------------------------------------------------
// Inspection of a run
// ---------------------------------------------------------------------------

/** What `run` asked for. */
export interface InspectionRequest {
  /** Live inspection on this port (0 = any free port). */
  live: { port: number; open: boolean } | null;
  /** Absolute path of the JSON-lines log. */
  logFile: string | null;
}

/** The `run` flags that control inspection. */
export interface InspectionArgs {
  inspect?: boolean;
  inspectPort?: number;
  inspectLog?: string;
  open?: boolean;
}

/**
 * Reads the inspection flags: `--open` and `--inspect-port` imply `--inspect`.
 * Null when nothing is to be inspected.
 */
export function inspectionRequestOf(args: InspectionArgs, cwd: string): InspectionRequest | null {
  const port = args.inspectPort ?? DEFAULT_INSPECT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new UsageError(
      `--inspect-port must be a port number (0-65535), not ${args.inspectPort}.`,
      {
        option: "--inspect-port",
        hint: "Use 0 for any free port.",
      },
    );
  }
  if (args.inspectLog !== undefined && args.inspectLog.trim() === "") {
    throw new UsageError("--inspect-log needs a file name.", { option: "--inspect-log" });
  }
  const live = args.inspect === true || args.open === true || args.inspectPort !== undefined;
  const logFile = args.inspectLog === undefined ? null : path.resolve(cwd, args.inspectLog);
  if (!live && !logFile) return null;
  return { live: live ? { port, open: args.open === true } : null, logFile };
}

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

// ---------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------

/** Reads a captured inspection log; a bad file is a {@link UsageError} naming the file and line. */
export async function readInspectionLog(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(
      `Cannot read the inspection log ${file}: ${code === "ENOENT" ? "no such file" : (error as Error).message}.`,
      {
        code: "inspect-log-unreadable",
        hint: "Capture one with `ravenclaws run … --inspect-log FILE`.",
      },
    );
  }
  const messages: string[] = [];
  const lines = text.split("\n");
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "") continue;
    const where = `${file}:${index + 1}`;
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch (error) {
      throw new UsageError(`${where} is not JSON: ${(error as Error).message}`, {
        code: "inspect-log-invalid",
        hint: "An inspection log has one JSON object per line, as `run --inspect-log` writes it.",
      });
    }
    const e = event as { type?: unknown; sessionId?: unknown } | null;
    if (
      typeof e !== "object" ||
      e === null ||
      !(INSPECTION_EVENT_TYPES as readonly unknown[]).includes(e.type) ||
      typeof e.sessionId !== "string"
    ) {
      throw new UsageError(
        `${where} is not an inspection event (expected an object with "type" ${INSPECTION_EVENT_TYPES.join(", ")} and a "sessionId").`,
        {
          code: "inspect-log-invalid",
          hint: "An inspection log has one JSON object per line, as `run --inspect-log` writes it.",
        },
      );
    }
    messages.push(line);
  }
  if (messages.length === 0) {
    throw new UsageError(`The inspection log ${file} has no events.`, {
      code: "inspect-log-empty",
      hint: "Capture one with `ravenclaws run … --inspect-log FILE`.",
    });
  }
  return messages;
}
