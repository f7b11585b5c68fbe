/**
 * A tiny wildcard matcher for text that is not a path (shell commands, host
 * names, variable names): `*` matches any run of characters, `/` and spaces
 * included; `?` matches one character; everything else is literal.
 */

const cache = new Map<string, RegExp>();

function compile(pattern: string, ignoreCase: boolean): RegExp {
  const key = `${ignoreCase ? "i" : "s"}:${pattern}`;
  let re = cache.get(key);
  if (!re) {
    const source = pattern
      .split("")
      .map((ch) =>
        ch === "*"
          ? "[\\s\\S]*"
          : ch === "?"
            ? "[\\s\\S]"
            : ch.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&"),
      )
      .join("");
    re = new RegExp(`^${source}$`, ignoreCase ? "i" : "");
    cache.set(key, re);
  }
  return re;
}

/**
 * Whether `text` matches the whole `pattern`.
 *
 * @param pattern - `*` and `?` wildcards; other characters literal.
 * @param text - The text to test.
 * @param ignoreCase - Compare without case (host names).
 */
export function matchesWildcard(pattern: string, text: string, ignoreCase = false): boolean {
  return compile(pattern, ignoreCase).test(text);
}
