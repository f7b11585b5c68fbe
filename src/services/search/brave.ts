import { z } from "zod";
import { requestJson } from "./http.js";
import { SearchFailure, type SearchProvider, type SearchResult } from "./types.js";

/** Brave Search's web search endpoint (`--search-url` overrides it, for tests and proxies). */
export const BRAVE_SEARCH_URL = "https://api.search.brave.com/res/v1/web/search";

/** Brave accepts at most this many results per request. */
const BRAVE_MAX_COUNT = 20;

const braveAnswer = z.looseObject({
  web: z
    .looseObject({
      results: z.array(
        z.looseObject({
          title: z.string().optional(),
          url: z.string(),
          description: z.string().nullish(),
        }),
      ),
    })
    .optional(),
});

/** Brave's snippets mark matches with `<strong>`; the model gets plain text. */
function stripTags(text: string): string {
  return text
    .replace(/<[^>]*>/g, "")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&");
}

/**
 * The Brave Search API (`X-Subscription-Token` header).
 *
 * @param key - The API key, read from the environment variable the config names.
 * @param keyEnv - That variable's name, for messages.
 * @param url - The endpoint; {@link BRAVE_SEARCH_URL} unless overridden.
 */
export function createBraveProvider(
  key: string,
  keyEnv: string,
  url = BRAVE_SEARCH_URL,
): SearchProvider {
  return {
    name: "brave",
    async search(query, count, signal) {
      const target = new URL(url);
      target.searchParams.set("q", query);
      target.searchParams.set("count", String(Math.min(Math.max(count, 1), BRAVE_MAX_COUNT)));
      const json = await requestJson(target, {
        provider: "Brave Search",
        authHint: `the API key in the environment variable ${keyEnv} is missing, wrong or not subscribed to web search; the operator must fix it`,
        headers: { "x-subscription-token": key },
        signal,
      });
      const parsed = braveAnswer.safeParse(json);
      if (!parsed.success) {
        throw new SearchFailure("malformed", "Brave Search answered JSON without web results");
      }
      return (parsed.data.web?.results ?? []).map(
        (r): SearchResult => ({
          title: stripTags(r.title ?? ""),
          url: r.url,
          snippet: stripTags(r.description ?? ""),
        }),
      );
    },
  };
}
