import { SearchFailure } from "./types.js";

/** Bytes of a provider's response read at most. */
export const SEARCH_MAX_RESPONSE_BYTES = 2 * 1024 * 1024;

/** What a provider request needs besides the URL. */
export interface ProviderRequest {
  /** Provider name for messages. */
  provider: string;
  /** How the operator fixes a refused key (names the variable, never the value). */
  authHint: string;
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  /** Aborts the request; a `TimeoutError` reason means the time limit, any other a stop. */
  signal: AbortSignal;
}

function timedOut(signal: AbortSignal): boolean {
  return (
    signal.aborted && signal.reason instanceof DOMException && signal.reason.name === "TimeoutError"
  );
}

async function readCapped(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (reader) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > SEARCH_MAX_RESPONSE_BYTES) {
      await reader.cancel();
      throw new SearchFailure(
        "malformed",
        `the response was larger than ${SEARCH_MAX_RESPONSE_BYTES / 1024 / 1024} MB`,
      );
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Sends one request to a search service and parses its JSON answer, turning
 * every failure (refused key, rate limit, unreachable, time limit, other
 * HTTP errors, a body that is not JSON) into a {@link SearchFailure}.
 */
export async function requestJson(url: URL, request: ProviderRequest): Promise<unknown> {
  const where = `${url.protocol}//${url.host}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: request.method ?? "GET",
      redirect: "error",
      signal: request.signal,
      headers: { accept: "application/json", ...request.headers },
      ...(request.body !== undefined ? { body: request.body } : {}),
    });
  } catch (error) {
    if (timedOut(request.signal)) {
      throw new SearchFailure("timeout", `${request.provider} at ${where} did not answer in time`);
    }
    if (request.signal.aborted) throw new SearchFailure("timeout", "aborted: the tick was stopped");
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new SearchFailure(
      "unreachable",
      `${request.provider} at ${where} is unreachable (${cause?.code ?? cause?.message ?? (error as Error).message})`,
    );
  }
  let text: string;
  try {
    text = await readCapped(response);
  } catch (error) {
    if (error instanceof SearchFailure) throw error;
    if (timedOut(request.signal)) {
      throw new SearchFailure("timeout", `${request.provider} at ${where} did not answer in time`);
    }
    throw new SearchFailure(
      "unreachable",
      `reading the answer of ${request.provider} failed (${(error as Error).message})`,
    );
  }
  if (response.status === 401 || response.status === 403) {
    throw new SearchFailure(
      "auth",
      `${request.provider} refused the request (HTTP ${response.status}): ${request.authHint}`,
    );
  }
  if (response.status === 429) {
    const retry = response.headers.get("retry-after");
    throw new SearchFailure(
      "rate-limited",
      `${request.provider} is rate-limiting searches (HTTP 429${retry ? `, retry after ${retry} s` : ""}); search less often or later`,
    );
  }
  if (!response.ok) {
    throw new SearchFailure(
      "http",
      `${request.provider} answered HTTP ${response.status} ${response.statusText}`.trimEnd(),
    );
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new SearchFailure(
      "malformed",
      `${request.provider} answered with something that is not JSON (${JSON.stringify(text.slice(0, 80))}…)`,
    );
  }
}
