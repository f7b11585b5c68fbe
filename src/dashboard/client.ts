/**
 * The dashboard's HTTP client: JSON reads, JSON POSTs (the server accepts
 * only `Content-Type: application/json` for state changes) and the live
 * event stream. The token, when the server needs one, travels in the cookie
 * that opening `/?token=…` set, so nothing here handles it.
 */
import type {
  ApiError,
  ApiEventMap,
  HeartbeatDetail,
  HeartbeatList,
  JournalResponse,
  MachineResponse,
} from "../serve/api.types.js";
import { API_EVENT_TYPES } from "../serve/api.types.js";

/** A failed request, with the server's message when it sent one. */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

async function request<T>(path: string, init?: RequestInit): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, { credentials: "same-origin", ...init });
  } catch {
    throw new RequestError("The server cannot be reached.", 0, "unreachable");
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = (body as ApiError | null)?.error;
    throw new RequestError(
      error?.message ?? `${init?.method ?? "GET"} ${path} failed: HTTP ${response.status}`,
      response.status,
      error?.code ?? "http",
    );
  }
  return body as T;
}

const enc = encodeURIComponent;

/** The dashboard's view of the API. */
export const api = {
  list: () => request<HeartbeatList>("/api/heartbeats"),
  detail: (id: string) => request<HeartbeatDetail>(`/api/heartbeats/${enc(id)}`),
  journal: (id: string) =>
    request<JournalResponse>(`/api/heartbeats/${enc(id)}/journal?limit=1000&type=tick`),
  machine: () => request<MachineResponse>("/api/machine"),
  /** POST a JSON body to a heartbeat action (`wake`, `stop`, `start`, `approve`, `deny`). */
  action: (id: string, action: string, body: Record<string, unknown> = {}) =>
    request<unknown>(`/api/heartbeats/${enc(id)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }),
};

/** Handlers of the live stream. */
export interface StreamHandlers {
  onEvent: <K extends keyof ApiEventMap>(type: K, data: ApiEventMap[K]) => void;
  /** The stream is (again) open: what happened while it was closed is unknown, reload. */
  onOpen: () => void;
  /** The stream broke; the browser reconnects by itself. */
  onError: () => void;
}

/** Subscribes to `GET /api/events`; returns the function that closes it. */
export function connectEvents(handlers: StreamHandlers): () => void {
  let source: EventSource | null = null;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  const open = () => {
    source = new EventSource("/api/events");
    source.onopen = () => handlers.onOpen();
    source.onerror = () => {
      handlers.onError();
      // EventSource gives up for good on an HTTP error answer: start again.
      if (source?.readyState === EventSource.CLOSED && !closed) {
        source.close();
        retry = setTimeout(open, 2000);
      }
    };
    for (const type of API_EVENT_TYPES) {
      source.addEventListener(type, (event) => {
        try {
          handlers.onEvent(type, JSON.parse((event as MessageEvent<string>).data));
        } catch {
          // A line we cannot read is skipped; the next reload catches up.
        }
      });
    }
  };
  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    source?.close();
  };
}
