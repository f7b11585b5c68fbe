/**
 * The web search adapter interface: one provider per search service, chosen
 * by `--search-provider`. Providers only talk to their service; the
 * `web_search` tool applies the caps and wraps the results.
 */

/** One search hit, as the provider gave it (the tool clips the fields). */
export interface SearchResult {
  title: string;
  url: string;
  snippet: string;
}

/** A search service. */
export interface SearchProvider {
  /** The provider's name (`searxng`, `brave`), for messages. */
  readonly name: string;
  /**
   * Runs one query.
   *
   * @param count - How many results are wanted; a provider may return more or fewer.
   * @param signal - Aborts the request (tick stopped, time limit).
   * @throws {@link SearchFailure} with a message written for the model.
   */
  search(query: string, count: number, signal: AbortSignal): Promise<SearchResult[]>;
}

/** Why a search failed. */
export type SearchFailureCode =
  | "auth"
  | "rate-limited"
  | "unreachable"
  | "timeout"
  | "http"
  | "malformed";

/** A failed search; the message is written for the model and never holds the key. */
export class SearchFailure extends Error {
  readonly code: SearchFailureCode;
  constructor(code: SearchFailureCode, message: string) {
    super(message);
    this.name = "SearchFailure";
    this.code = code;
  }
}
