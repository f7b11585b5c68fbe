/**
 * The stub model of `npm run bench:scale`, over HTTP: worker processes use the
 * real `openai` client, so the canned answers of `bench/stubModel.ts` (an idle
 * heartbeat: nothing needs doing) are served on 127.0.0.1 (port 0) in the
 * Chat Completions wire format. No public network; an optional fixed delay
 * stands in for a real model's latency.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** A running stub model server. */
export interface StubModelServer {
  /** Base URL for the openai client, `http://127.0.0.1:PORT/v1`. */
  baseURL: string;
  /** Chat completion requests answered, by the JSON schema asked for (`assessment`, `plan`, `execute`). */
  counts(): { assessment: number; plan: number; execute: number; errors: number };
  close(): Promise<void>;
}

/** The idle assessment every tick gets: nothing to do, the goal is ongoing. */
const ASSESSMENT = {
  goalComplete: false,
  actionNeeded: false,
  assessment:
    "NOTES.md is up to date with the TODO markers in the workspace; nothing changed since the last tick.",
  progressSummary: "NOTES.md lists the TODO markers of the workspace.",
  attention: null,
  checklist: null,
};

function reply(body: Record<string, unknown>): { kind: keyof Counts; content: string } {
  const format = body.response_format as { json_schema?: { name?: string } } | undefined;
  const name = format?.json_schema?.name;
  if (name === "assessment") return { kind: "assessment", content: JSON.stringify(ASSESSMENT) };
  if (name === "plan") return { kind: "plan", content: JSON.stringify({ steps: [] }) };
  return { kind: "execute", content: "Nothing to do this tick." };
}

type Counts = { assessment: number; plan: number; execute: number; errors: number };

/** Starts the stub on 127.0.0.1 with an ephemeral port; every answer waits `delayMs` first. */
export async function startStubModelServer(delayMs = 0): Promise<StubModelServer> {
  const counts: Counts = { assessment: 0, plan: 0, execute: 0, errors: 0 };
  const sockets = new Set<Socket>();
  let answered = 0;

  const send = (res: ServerResponse, status: number, value: unknown) => {
    if (res.destroyed) return;
    const text = JSON.stringify(value);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    });
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      counts.errors++;
      send(res, 404, { error: { message: `No route ${req.method} ${req.url}` } });
      return;
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
    } catch {
      counts.errors++;
      send(res, 400, {
        error: { message: "The body is not JSON.", type: "invalid_request_error" },
      });
      return;
    }
    const { kind, content } = reply(body);
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    counts[kind]++;
    answered++;
    const prompt = Math.ceil(JSON.stringify(body.messages ?? []).length / 4);
    const completion = Math.ceil(content.length / 4);
    send(res, 200, {
      id: `chatcmpl-stub${answered}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: typeof body.model === "string" ? body.model : "stub",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content, refusal: null },
          finish_reason: "stop",
          logprobs: null,
        },
      ],
      usage: {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
      },
    });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      counts.errors++;
      if (!res.headersSent) send(res, 500, { error: { message: String(error) } });
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    counts: () => ({ ...counts }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
