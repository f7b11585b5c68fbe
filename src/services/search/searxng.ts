import { z } from "zod";
import { requestJson } from "./http.js";
import { SearchFailure, type SearchProvider, type SearchResult } from "./types.js";

const searxngAnswer = z.object({
  results: z.array(
    z.looseObject({
      title: z.string().optional(),
      url: z.string(),
      content: z.string().nullish(),
    }),
  ),
});

/**
 * A self-hosted SearXNG instance through its JSON API (`GET
 * /search?q=…&format=json`; the instance must list `json` in
 * `search.formats`). No key.
 *
 * @param baseUrl - The instance's URL (`--search-url`), with or without a path prefix.
 */
export function createSearxngProvider(baseUrl: string): SearchProvider {
  const base = new URL(baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`);
  return {
    name: "searxng",
    async search(query, _count, signal) {
      const url = new URL("search", base);
      url.searchParams.set("q", query);
      url.searchParams.set("format", "json");
      const json = await requestJson(url, {
        provider: "SearXNG",
        authHint:
          "the instance refuses JSON searches; its settings.yml must list json under search.formats",
        signal,
      });
      const parsed = searxngAnswer.safeParse(json);
      if (!parsed.success) {
        throw new SearchFailure(
          "malformed",
          "SearXNG answered JSON without the expected results list",
        );
      }
      return parsed.data.results.map(
        (r): SearchResult => ({ title: r.title ?? "", url: r.url, snippet: r.content ?? "" }),
      );
    },
  };
}
