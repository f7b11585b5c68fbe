/**
 * The only way out for the browser's traffic: a forward proxy on 127.0.0.1
 * that Chromium must use for every connection (`--proxy-server`, loopback
 * included). Each request (plain http) and each tunnel (`CONNECT`: https and
 * websockets) is checked by host before anything is sent, and connected to
 * the very address that was checked, so redirects, subresources, websockets
 * and late requests from scripts are all held to the same rules, and a host
 * name cannot resolve differently between the check and the connection.
 */
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";

/** The verdict on one host: where to connect, or why not. */
export type EgressVerdict = { address: string } | { refused: string };

/** Decides a host (without port) for a URL whose scheme is `http` or `https`. */
export type EgressCheck = (host: string, scheme: "http" | "https") => Promise<EgressVerdict>;

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

function stripHost(host: string): string {
  return host.replace(/^\[|\]$/g, "").toLowerCase();
}

/** A running proxy. */
export interface EgressProxy {
  /** `http://127.0.0.1:PORT`, for `--proxy-server`. */
  url: string;
  close(): Promise<void>;
}

/** Starts the proxy on 127.0.0.1 (port 0). */
export async function startEgressProxy(check: EgressCheck): Promise<EgressProxy> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    void (async () => {
      let target: URL;
      try {
        target = new URL(req.url ?? "");
        if (target.protocol !== "http:") throw new Error("not http");
      } catch {
        res.writeHead(400, { "content-type": "text/plain" }).end("Bad proxy request");
        return;
      }
      const verdict = await check(stripHost(target.hostname), "http").catch(
        (error: unknown): EgressVerdict => ({ refused: String(error) }),
      );
      if ("refused" in verdict) {
        res
          .writeHead(403, { "content-type": "text/plain; charset=utf-8" })
          .end(`Blocked by the ravenclaws browser tool: ${verdict.refused}.`);
        return;
      }
      const headers: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
      }
      const upstream = request(
        {
          host: verdict.address,
          port: target.port || 80,
          method: req.method,
          path: `${target.pathname}${target.search}`,
          headers,
          setHost: false,
          agent: false,
        },
        (answer) => {
          const out: Record<string, string | string[]> = {};
          for (const [name, value] of Object.entries(answer.headers)) {
            if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
          }
          res.writeHead(answer.statusCode ?? 502, answer.statusMessage, out);
          answer.pipe(res);
        },
      );
      upstream.on("error", () => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end();
      });
      req.pipe(upstream);
    })();
  });
  server.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
    sockets.add(client);
    client.once("close", () => sockets.delete(client));
    client.on("error", () => undefined);
    void (async () => {
      const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(req.url ?? "");
      if (!match) {
        client.end("HTTP/1.1 400 Bad Request\r\n\r\n");
        return;
      }
      const [, host = "", port = "443"] = match;
      // A tunnel carries https or a websocket; the port decides nothing.
      const verdict = await check(stripHost(host), "https").catch(
        (error: unknown): EgressVerdict => ({ refused: String(error) }),
      );
      if ("refused" in verdict) {
        client.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
        return;
      }
      const upstream = connect(Number(port), verdict.address, () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        if (head.length > 0) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      sockets.add(upstream);
      upstream.once("close", () => {
        sockets.delete(upstream);
        client.destroy();
      });
      upstream.on("error", () => client.end("HTTP/1.1 502 Bad Gateway\r\n\r\n"));
    })();
  });
  // A plain ws:// upgrade through a proxy: Chromium tunnels websockets, so refuse anything else.
  server.on("upgrade", (_req, socket: Socket) => socket.destroy());
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
