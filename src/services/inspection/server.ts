/**
 * Our inspector server on 127.0.0.1: a bridge page that embeds the Stately
 * inspector, and a WebSocket relay that keeps every message a client sends
 * and relays it to the others (see index.ts for why not
 * `@statelyai/inspect/server`). Also opening its page in a browser.
 */
import { spawn } from "node:child_process";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";
import { UsageError } from "../../errors.js";

/** The inspector page the bridge embeds. */
export const STATELY_INSPECTOR_URL = "https://stately.ai/inspect";
/** Port of the inspector server unless `--inspect-port` says otherwise (Stately's default). */
export const DEFAULT_INSPECT_PORT = 8080;

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
