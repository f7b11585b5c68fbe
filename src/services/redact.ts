/**
 * Removes secrets (the API key) from text before it reaches a file, a log or
 * the terminal.
 */

/** A function that replaces every secret in a string with `[redacted]`. */
export type Redactor = (text: string) => string;

/** Builds a {@link Redactor} for the given secrets; very short values are ignored (they would match everywhere). */
export function createRedactor(secrets: Array<string | undefined>): Redactor {
  const values = [
    ...new Set(secrets.filter((s): s is string => typeof s === "string" && s.length >= 6)),
  ].sort((a, b) => b.length - a.length);
  if (values.length === 0) return (text) => text;
  return (text) => {
    let out = text;
    for (const secret of values) out = out.split(secret).join("[redacted]");
    return out;
  };
}

/** Redacts nothing. */
export const noRedaction: Redactor = (text) => text;
