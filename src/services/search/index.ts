/**
 * Picks the web search provider from the settings (`--search-provider`,
 * `--search-url`, `--search-key-env`).
 */

import type { SearchProviderName } from "../../settings.js";
import { BRAVE_SEARCH_URL, createBraveProvider } from "./brave.js";
import { createSearxngProvider } from "./searxng.js";
import type { SearchProvider } from "./types.js";

export { SEARCH_PROVIDERS, type SearchProviderName } from "../../settings.js";
export { BRAVE_SEARCH_URL } from "./brave.js";
export { SearchFailure, type SearchProvider, type SearchResult } from "./types.js";

/** The environment variable holding the Brave key unless `--search-key-env` names another. */
export const DEFAULT_SEARCH_KEY_ENV = "BRAVE_SEARCH_API_KEY";

/** The search settings. */
export interface SearchSettings {
  provider?: SearchProviderName | undefined;
  /** SearXNG: the instance (required). Brave: replaces the API endpoint (tests, proxies). */
  url?: string | undefined;
  /** Name of the environment variable holding the key (Brave). */
  keyEnv?: string | undefined;
}

/** A provider and the secret it uses, or why there is none. */
export type SearchSetup =
  | { provider: SearchProvider; secret?: string }
  | { provider?: undefined; problem: string };

/**
 * Builds the configured provider. The key is read from the environment here,
 * once; it goes into the toolbox's secrets (redacted from all output, hidden
 * from shell commands and the browser), never into the state.
 */
export function createSearchProvider(
  settings: SearchSettings,
  env: NodeJS.ProcessEnv = process.env,
): SearchSetup {
  switch (settings.provider) {
    case undefined:
      return { problem: "no search provider is configured (--search-provider)" };
    case "searxng":
      if (!settings.url) {
        return {
          problem:
            "--search-provider searxng needs --search-url (the SearXNG instance, e.g. http://localhost:8888)",
        };
      }
      return { provider: createSearxngProvider(settings.url) };
    case "brave": {
      const keyEnv = settings.keyEnv ?? DEFAULT_SEARCH_KEY_ENV;
      const key = env[keyEnv]?.trim();
      if (!key) {
        return {
          problem: `--search-provider brave needs its API key in the environment variable ${keyEnv} (--search-key-env names another), which is not set`,
        };
      }
      return {
        provider: createBraveProvider(key, keyEnv, settings.url ?? BRAVE_SEARCH_URL),
        secret: key,
      };
    }
  }
}
