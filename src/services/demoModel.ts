/**
 * The scripted model behind `ravenclaws demo`: a tiny OpenAI-compatible HTTP
 * server on 127.0.0.1 (port 0) that answers the heartbeat's assess, plan and
 * execute requests with canned JSON and tool calls. It is not AI: it lets the
 * real client, statechart, store and tools run without an API key or network.
 *
 * Script: tick 1 lists the workspace and writes NOTES.md; tick 2 reads it and
 * adds a second entry; tick 3's assessment reports the goal complete.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** The goal the demo heartbeat is given. */
export const DEMO_GOAL =
  "Start a NOTES.md in the workspace with a first entry, add a second entry on the next tick, and finish once both are there.";

/** The model name the demo reports. */
export const DEMO_MODEL = "scripted-demo (not AI)";

type Message = { role?: string; content?: unknown };
type ToolCall = { name: string; arguments: Record<string, unknown> };
type Reply = { content: string | null; toolCalls?: ToolCall[] };

const FIRST_ENTRY = "# Demo notes\n\n- Tick 1: started these notes.\n";
const SECOND_ENTRY = `${FIRST_ENTRY}- Tick 2: read them back and added this entry.\n`;

const ASSESSMENTS: Record<number, object> = {
  1: {
    goalComplete: false,
    actionNeeded: true,
    assessment: "The workspace has no NOTES.md yet, so nothing of the goal is done.",
    progressSummary: "Nothing written yet.",
  },
  2: {
    goalComplete: false,
    actionNeeded: true,
    assessment: "NOTES.md exists with its first entry; the second entry is still missing.",
    progressSummary: "Tick 1 created NOTES.md with a first entry.",
  },
  3: {
    goalComplete: true,
    actionNeeded: false,
    assessment: "NOTES.md has both entries: the goal is met.",
    progressSummary: "Tick 1 created NOTES.md; tick 2 added the second entry. Done.",
  },
};

const PLANS: Record<number, object> = {
  1: { steps: ["List the workspace to see what is there", "Create NOTES.md with a first entry"] },
  2: { steps: ["Read NOTES.md", "Write it back with a second entry"] },
};

/** Tool calls of each tick, one model call after another; then the tick's report. */
const EXECUTION: Record<number, { calls: ToolCall[][]; report: string }> = {
  1: {
    calls: [
      [
        { name: "list_dir", arguments: { path: "." } },
        { name: "write_file", arguments: { path: "NOTES.md", content: FIRST_ENTRY } },
      ],
    ],
    report: "Listed the workspace (it was empty) and created NOTES.md with a first entry.",
  },
  2: {
    calls: [
      [{ name: "read_file", arguments: { path: "NOTES.md" } }],
      [{ name: "write_file", arguments: { path: "NOTES.md", content: SECOND_ENTRY } }],
    ],
    report: "Read NOTES.md and wrote it back with the second entry.",
  },
};

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (p && typeof p === "object" && "text" in p ? String(p.text) : ""))
      .join("\n");
  }
  return "";
}

/** The reply to one chat completion request, chosen from the script. */
export function demoReply(body: Record<string, unknown>, fallbackTick: number): Reply {
  const messages = (Array.isArray(body.messages) ? body.messages : []) as Message[];
  const prompt = messages
    .filter((m) => m.role === "user")
    .map((m) => textOf(m.content))
    .join("\n");
  const tick = Number(/^Tick: (\d+)/m.exec(prompt)?.[1] ?? fallbackTick);
  const format = body.response_format as { json_schema?: { name?: string } } | undefined;
  const schema = format?.json_schema?.name;
  if (schema === "assessment") {
    return { content: JSON.stringify(ASSESSMENTS[Math.min(tick, 3)]) };
  }
  if (schema === "plan") {
    return { content: JSON.stringify(PLANS[tick] ?? { steps: ["Nothing left to do"] }) };
  }
  const script = EXECUTION[tick];
  const tools = Array.isArray(body.tools) && body.tools.length > 0;
  const done = messages.filter((m) => m.role === "assistant").length;
  const calls = script?.calls[done];
  if (tools && calls) return { content: null, toolCalls: calls };
  return { content: script?.report ?? "Nothing to do this tick." };
}

/** A running demo model server. */
export interface DemoModel {
  /** Base URL for the openai client, `http://127.0.0.1:PORT/v1`. */
  baseURL: string;
  /** Chat completion requests answered so far. */
  requests(): number;
  close(): Promise<void>;
}

const tokensOf = (text: string) => Math.max(1, Math.ceil(text.length / 4));

/** Starts the scripted model on 127.0.0.1 with an ephemeral port. */
export async function startDemoModel(): Promise<DemoModel> {
  let answered = 0;
  let assessments = 0;
  let callIds = 0;
  const sockets = new Set<Socket>();

  const send = (res: ServerResponse, status: number, value: unknown) => {
    const body = JSON.stringify(value);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
    });
    res.end(body);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      send(res, 404, {
        error: { message: `No route ${req.method} ${req.url}`, type: "invalid_request_error" },
      });
      return;
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      send(res, 400, {
        error: { message: "The body is not JSON.", type: "invalid_request_error" },
      });
      return;
    }
    const format = body.response_format as { json_schema?: { name?: string } } | undefined;
    if (format?.json_schema?.name === "assessment") assessments += 1;
    const reply = demoReply(body, assessments);
    answered += 1;
    const toolCalls = reply.toolCalls?.map((c) => {
      callIds += 1;
      return {
        id: `call_demo_${callIds}`,
        type: "function",
        function: { name: c.name, arguments: JSON.stringify(c.arguments) },
      };
    });
    const promptTokens = tokensOf(JSON.stringify(body.messages ?? []));
    const completionTokens = tokensOf(reply.content ?? JSON.stringify(toolCalls ?? []));
    send(res, 200, {
      id: `chatcmpl-demo${answered}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: DEMO_MODEL,
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: reply.content,
            refusal: null,
            ...(toolCalls ? { tool_calls: toolCalls } : {}),
          },
          finish_reason: toolCalls ? "tool_calls" : "stop",
          logprobs: null,
        },
      ],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens,
        total_tokens: promptTokens + completionTokens,
      },
    });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent)
        send(res, 500, { error: { message: String(error), type: "server_error" } });
    });
  });
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
    requests: () => answered,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
