/**
 * `ravenclaws serve`'s HTTP server (node:http): the JSON API over a
 * {@link ServedHost}, the event stream, and the dashboard's static files, behind
 * the access rules of `security.ts`. Routes and JSON: `api.types.ts`.
 */
import * as fs from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  CommandFailedError,
  ConfigError,
  LockedError,
  RavenclawsError,
  UsageError,
} from "../errors.js";
import type { ServedHost } from "../host/types.js";
import type { Redactor } from "../services/redact.js";
import { ID_PATTERN } from "../settings.js";
import type {
  ActionResponse,
  ApiError,
  DecisionResponse,
  HealthResponse,
  HeartbeatList,
  JournalEntry,
  JournalResponse,
  PendingApprovalCall,
} from "./api.types.js";
import { EventHub } from "./events.js";
import {
  ApiRequestError,
  checkCreateRequest,
  parseJsonObject,
  readBody,
  settingOfOption,
} from "./request.js";
import {
  hostHeaderAllowed,
  isJsonRequest,
  isLoopbackHost,
  originAllowed,
  setSecurityHeaders,
  tokenCookie,
  tokenSourceOf,
} from "./security.js";
import { escapeHtml, sendHtml, serveStatic } from "./static.js";
import { detailOf, summaryOf } from "./views.js";

/** How the API reaches approvals (the approvals service); absent until it is wired. */
export interface ApprovalsPort {
  /** The calls of heartbeat `id` waiting for a decision. */
  pending(id: string): Promise<PendingApprovalCall[]>;
  /** Stores a decision for one call (or every pending call of `id`); resolves with the call ids decided. */
  decide(
    id: string,
    request: { callId?: string; decision: "approve" | "deny"; reason?: string },
  ): Promise<string[]>;
}

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /** The state dir's host, or the database's (`src/host/dbHost.ts`). */
  host: ServedHost;
  /** Address to bind (default 127.0.0.1). */
  listenHost?: string;
  /** Port (0 = any free one). */
  port: number;
  /** Every request must carry it when set; required when `listenHost` is not loopback. */
  token?: string;
  /** The dashboard's build (`dist/dashboard`). */
  dashboardDir: string;
  /** Removes the server's secrets from every response body. */
  redact: Redactor;
  approvals?: ApprovalsPort;
  /** Milliseconds between the event stream's keep-alive comments. */
  keepAliveMs?: number;
  /** Where internal errors are reported (the server's stderr). */
  log?: (line: string) => void;
  /** Version reported by `/api/health`. */
  version?: string;
}

/** A running server. */
export interface ApiServer {
  /** `http://127.0.0.1:PORT` (the address as bound). */
  url: string;
  server: Server;
  /** Event-stream clients connected now. */
  eventClients(): number;
  /** Ends the event streams and every connection, then the listener. */
  close(): Promise<void>;
}

/** The longest journal tail read for `/journal` (older lines are left out, `truncated`). */
export const JOURNAL_TAIL_BYTES = 8 * 1024 * 1024;
/** Default and largest `limit` of `/journal`. */
export const JOURNAL_DEFAULT_LIMIT = 500;
export const JOURNAL_MAX_LIMIT = 5_000;

/** Starts the server; resolves once it listens. */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const listenHost = options.listenHost ?? "127.0.0.1";
  const loopback = isLoopbackHost(listenHost);
  if (!loopback && !options.token) {
    throw new UsageError(`Serving on ${listenHost} needs a token.`, {
      option: "--token",
      code: "token-required",
    });
  }
  const hub = new EventHub({
    redact: options.redact,
    ...(options.keepAliveMs ? { keepAliveMs: options.keepAliveMs } : {}),
  });
  const unsubscribe = options.host.subscribe((event) => hub.publish(event));
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let machineJson: string | undefined;

  const sendJson = (res: ServerResponse, status: number, body: unknown) => {
    const text = options.redact(JSON.stringify(body));
    res.statusCode = status;
    res.setHeader("Content-Type", "application/json; charset=utf-8");
    res.setHeader("Cache-Control", "no-store");
    res.setHeader("Content-Length", Buffer.byteLength(text));
    res.end(text);
  };
  const sendError = (
    res: ServerResponse,
    status: number,
    code: string,
    message: string,
    field?: string,
  ) => {
    const body: ApiError = { error: { code, message, ...(field ? { field } : {}) } };
    sendJson(res, status, body);
  };

  const requireId = (raw: string): string => {
    let id: string;
    try {
      id = decodeURIComponent(raw);
    } catch {
      throw new ApiRequestError(400, "invalid-id", "The heartbeat id is not valid.", "id");
    }
    if (!ID_PATTERN.test(id)) {
      throw new ApiRequestError(
        400,
        "invalid-id",
        "A heartbeat id is letters, digits, '.', '_' and '-' (at most 128), starting with a letter or digit.",
        "id",
      );
    }
    return id;
  };
  const requireKnown = async (id: string) => {
    const known = options.host.has
      ? await options.host.has(id)
      : (await options.host.list()).some((s) => s.id === id);
    if (!known) {
      throw new ApiRequestError(404, "not-found", `No heartbeat ${id} is hosted here.`, "id");
    }
  };

  async function readJournal(file: string): Promise<{ entries: JournalEntry[]; cut: boolean }> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, "r");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return { entries: [], cut: false };
      throw error;
    }
    try {
      const { size } = await handle.stat();
      const start = Math.max(0, size - JOURNAL_TAIL_BYTES);
      const buffer = Buffer.alloc(size - start);
      await handle.read(buffer, 0, buffer.length, start);
      let text = buffer.toString("utf8");
      if (start > 0) text = text.slice(text.indexOf("\n") + 1);
      const entries: JournalEntry[] = [];
      for (const line of text.split("\n")) {
        if (!line.trim()) continue;
        try {
          const value = JSON.parse(line) as unknown;
          if (
            value &&
            typeof value === "object" &&
            typeof (value as { type?: unknown }).type === "string"
          )
            entries.push(value as JournalEntry);
        } catch {
          // A torn last line (a crash mid-append) is skipped, as the store does.
        }
      }
      return { entries, cut: start > 0 };
    } finally {
      await handle.close();
    }
  }

  async function machine(): Promise<string> {
    if (machineJson) return machineJson;
    const [{ heartbeatMachine }, diagram] = await Promise.all([
      import("../runtime.js"),
      import("../services/diagram.js"),
    ]);
    machineJson = JSON.stringify(diagram.machineDefinitions(heartbeatMachine));
    return machineJson;
  }

  async function api(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? "GET";
    const parts = url.pathname.split("/").filter(Boolean).slice(1); // after "api"
    const allow = (...methods: string[]) => {
      if (methods.includes(method) || (method === "HEAD" && methods.includes("GET"))) return;
      res.setHeader("Allow", methods.join(", "));
      throw new ApiRequestError(
        405,
        "method-not-allowed",
        `${method} is not allowed here; use ${methods.join(" or ")}.`,
      );
    };
    const body = async () => parseJsonObject(await readBody(req));
    const [first, rawId, action, ...rest] = parts;

    if (first === "health" && parts.length === 1) {
      allow("GET");
      const health: HealthResponse = {
        ok: true,
        version: options.version ?? "",
        heartbeats: (await options.host.list()).length,
      };
      return sendJson(res, 200, health);
    }
    if (first === "machine" && parts.length === 1) {
      allow("GET");
      const text = options.redact(await machine());
      res.statusCode = 200;
      res.setHeader("Content-Type", "application/json; charset=utf-8");
      res.setHeader("Cache-Control", "no-cache");
      return void res.end(text);
    }
    if (first === "events" && parts.length === 1) {
      allow("GET");
      if (method === "HEAD") {
        res.statusCode = 200;
        res.setHeader("Content-Type", "text/event-stream; charset=utf-8");
        return void res.end();
      }
      hub.attach(req, res);
      return;
    }
    if (first !== "heartbeats" || rest.length > 0) {
      throw new ApiRequestError(404, "not-found", `No API route ${url.pathname}.`);
    }
    if (rawId === undefined) {
      allow("GET", "POST");
      if (method === "POST") {
        const request = checkCreateRequest(await body());
        let created: Awaited<ReturnType<ServedHost["create"]>>;
        try {
          created = await options.host.create({
            goal: request.goal,
            ...(request.id ? { id: request.id } : {}),
            ...(request.workdir ? { workdir: request.workdir } : {}),
            settings: request.settings,
          });
        } catch (error) {
          throw fromHostError(error);
        }
        const detail = await options.host.get(created.id);
        res.setHeader("Location", `/api/heartbeats/${encodeURIComponent(created.id)}`);
        return sendJson(res, 201, detail ? detailOf(detail, []) : summaryOf(created));
      }
      const list: HeartbeatList = {
        heartbeats: (await options.host.list()).map(summaryOf),
        now: new Date().toISOString(),
      };
      return sendJson(res, 200, list);
    }
    const id = requireId(rawId);
    if (action === undefined) {
      allow("GET");
      const detail = await options.host.get(id);
      if (!detail)
        throw new ApiRequestError(404, "not-found", `No heartbeat ${id} is hosted here.`, "id");
      const approvals = options.approvals ? await options.approvals.pending(id) : [];
      return sendJson(res, 200, detailOf(detail, approvals));
    }
    if (action === "journal") {
      allow("GET");
      const detail = await options.host.get(id);
      if (!detail)
        throw new ApiRequestError(404, "not-found", `No heartbeat ${id} is hosted here.`, "id");
      const limitText = url.searchParams.get("limit");
      const limit = limitText === null ? JOURNAL_DEFAULT_LIMIT : Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > JOURNAL_MAX_LIMIT) {
        throw new ApiRequestError(
          400,
          "invalid-query",
          `limit must be a whole number from 1 to ${JOURNAL_MAX_LIMIT}.`,
          "limit",
        );
      }
      const types = url.searchParams
        .get("type")
        ?.split(",")
        .map((t) => t.trim())
        .filter(Boolean);
      if (options.host.journal) {
        const page = await options.host.journal(id, { limit, ...(types ? { types } : {}) });
        const response: JournalResponse = {
          id,
          entries: page.entries as JournalEntry[],
          truncated: page.truncated,
        };
        return sendJson(res, 200, response);
      }
      const { entries, cut } = await readJournal(detail.journal);
      const chosen = types?.length ? entries.filter((e) => types.includes(e.type)) : entries;
      const response: JournalResponse = {
        id,
        entries: chosen.slice(-limit),
        truncated: cut || chosen.length > limit,
      };
      return sendJson(res, 200, response);
    }
    if (action === "wake" || action === "stop" || action === "start") {
      allow("POST");
      await body();
      await requireKnown(id);
      let result: Awaited<ReturnType<ServedHost["wake"]>>;
      try {
        result = await options.host[action](id);
      } catch (error) {
        throw fromHostError(error);
      }
      const response: ActionResponse = { ok: true, action, heartbeat: summaryOf(result.summary) };
      return sendJson(res, 202, response);
    }
    if (action === "approve" || action === "deny") {
      allow("POST");
      const request = await body();
      for (const key of Object.keys(request)) {
        if (key !== "callId" && !(action === "deny" && key === "reason")) {
          throw new ApiRequestError(
            400,
            "unknown-field",
            `Unknown field ${key} (give ${action === "deny" ? "callId and reason" : "callId"}).`,
            key,
          );
        }
      }
      if (
        request.callId !== undefined &&
        (typeof request.callId !== "string" || request.callId === "")
      ) {
        throw new ApiRequestError(
          400,
          "invalid-field",
          "callId must be a non-empty string.",
          "callId",
        );
      }
      if (request.reason !== undefined && typeof request.reason !== "string") {
        throw new ApiRequestError(400, "invalid-field", "reason must be a string.", "reason");
      }
      await requireKnown(id);
      if (!options.approvals) {
        throw new ApiRequestError(
          501,
          "not-implemented",
          "Approvals are not available in this build: the approvals service is not wired into serve yet. Use `ravenclaws approve`/`deny` when it exists.",
        );
      }
      let callIds: string[];
      try {
        callIds = await options.approvals.decide(id, {
          decision: action,
          ...(typeof request.callId === "string" ? { callId: request.callId } : {}),
          ...(typeof request.reason === "string" ? { reason: request.reason } : {}),
        });
      } catch (error) {
        throw fromHostError(error, "callId");
      }
      const response: DecisionResponse = { ok: true, decision: action, callIds };
      return sendJson(res, 200, response);
    }
    throw new ApiRequestError(404, "not-found", `No API route ${url.pathname}.`);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    setSecurityHeaders(res);
    const isApi = (req.url ?? "/").startsWith("/api/") || req.url === "/api";
    const fail = (status: number, code: string, message: string) => {
      if (isApi) return sendError(res, status, code, message);
      sendHtml(
        res,
        status,
        `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ravenclaws</title></head><body><h1>${status}</h1><p>${escapeHtml(message)}</p></body></html>\n`,
      );
    };
    if (!hostHeaderAllowed(req, loopback)) {
      return fail(
        403,
        "forbidden-host",
        "This server answers only requests addressed to localhost or 127.0.0.1.",
      );
    }
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      return fail(400, "bad-request", "The request URL is not valid.");
    }
    if (options.token) {
      const source = tokenSourceOf(req, url, options.token);
      if (!source) {
        res.setHeader("WWW-Authenticate", 'Bearer realm="ravenclaws"');
        return fail(
          401,
          "unauthorized",
          "This server needs its token: send `Authorization: Bearer <token>`, or open the page once as /?token=<token> (serve printed it).",
        );
      }
      if (source === "query" && !isApi && (req.method === "GET" || req.method === "HEAD")) {
        // Keep the token in a cookie and take it out of the address bar (and the history).
        url.searchParams.delete("token");
        res.setHeader("Set-Cookie", tokenCookie(options.token));
        res.statusCode = 303;
        res.setHeader("Location", `${url.pathname}${url.search}`);
        return void res.end();
      }
    }
    const method = req.method ?? "GET";
    if (method !== "GET" && method !== "HEAD" && method !== "POST") {
      res.setHeader("Allow", isApi ? "GET, HEAD, POST" : "GET, HEAD");
      return fail(405, "method-not-allowed", `${method} is not used by this server.`);
    }
    if (method === "POST") {
      if (!originAllowed(req)) {
        return fail(
          403,
          "forbidden-origin",
          "Cross-origin requests may not change anything here: the Origin must be this server's own.",
        );
      }
      if (!isJsonRequest(req)) {
        return fail(
          415,
          "unsupported-media-type",
          "Send the request body as JSON, with `Content-Type: application/json`.",
        );
      }
    }
    if (isApi) {
      try {
        await api(req, res, url);
      } catch (error) {
        if (error instanceof ApiRequestError) {
          return sendError(res, error.status, error.code, error.message, error.field);
        }
        log(
          options.redact(
            `ravenclaws serve: internal error on ${method} ${url.pathname}: ${(error as Error)?.message ?? String(error)}`,
          ),
        );
        return sendError(res, 500, "internal", "Internal error; the server's log has the details.");
      }
      return;
    }
    if (method !== "GET" && method !== "HEAD") {
      res.setHeader("Allow", "GET, HEAD");
      return fail(405, "method-not-allowed", "Only GET here.");
    }
    await serveStatic(options.dashboardDir, url.pathname, res, method === "HEAD");
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log(
        options.redact(
          `ravenclaws serve: internal error: ${(error as Error)?.message ?? String(error)}`,
        ),
      );
      if (!res.headersSent)
        sendError(res, 500, "internal", "Internal error; the server's log has the details.");
      else res.destroy();
    });
  });
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, listenHost, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    unsubscribe();
    hub.close();
    throw listenError(error, listenHost, options.port);
  }
  const address = server.address() as AddressInfo;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}`,
    server,
    eventClients: () => hub.size,
    async close() {
      unsubscribe();
      hub.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/** Why the server could not listen, as a usage error naming the option at fault (exit 2). */
function listenError(error: unknown, listenHost: string, port: number): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE") {
    return new UsageError(`Port ${port} on ${listenHost} is already in use.`, {
      option: "--port",
      code: "port-in-use",
      hint: "Stop what uses it, or pass another --port (0 picks a free one).",
    });
  }
  if (code === "EACCES") {
    return new UsageError(`Not allowed to listen on port ${port} of ${listenHost}.`, {
      option: "--port",
      code: "port-not-allowed",
      hint: "Ports below 1024 need privileges; pass a higher --port (0 picks a free one).",
    });
  }
  if (code === "EADDRNOTAVAIL" || code === "ENOTFOUND" || code === "EAI_AGAIN") {
    return new UsageError(`Cannot listen on ${listenHost}: no such address on this machine.`, {
      option: "--host",
      code: "host-unavailable",
      hint: "Pass an address of this machine (127.0.0.1, 0.0.0.0, ::1, or one of its interfaces).",
    });
  }
  return error;
}

/** A host (or approvals) error as the API's answer: bad input 400 naming the field, unknown 404, busy 409. */
export function fromHostError(error: unknown, fallbackField?: string): ApiRequestError {
  if (error instanceof ApiRequestError) return error;
  if (error instanceof UsageError) {
    const field = settingOfOption(error.option) ?? fallbackField;
    const hint = error.hint ? ` ${error.hint}` : "";
    const status = /exist|already/i.test(error.code) ? 409 : 400;
    return new ApiRequestError(status, error.code, `${error.message}${hint}`, field);
  }
  if (error instanceof ConfigError) {
    return new ApiRequestError(400, "invalid-setting", error.message, error.key);
  }
  if (error instanceof LockedError) {
    return new ApiRequestError(409, error.code, error.message);
  }
  if (error instanceof CommandFailedError) {
    const code = error.code as string;
    const status = code === "not-found" ? 404 : 409;
    return new ApiRequestError(status, code, error.message);
  }
  if (error instanceof RavenclawsError) {
    const status = error.exitCode === 2 ? 400 : 409;
    return new ApiRequestError(status, error.code, error.message);
  }
  throw error;
}
