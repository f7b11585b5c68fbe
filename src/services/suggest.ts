/**
 * "Did you mean …?": the nearest of some names to a misspelt one, by edit
 * distance. Dependency-free, for config keys, flags and commands.
 */

/** Edit distance (Levenshtein, with a swap of two neighbours as one edit), case-insensitive, `-` and `_` alike. */
export function editDistance(a: string, b: string): number {
  const norm = (s: string) => s.toLowerCase().replace(/-/g, "_");
  const x = norm(a);
  const y = norm(b);
  const rows: number[][] = [Array.from({ length: y.length + 1 }, (_, j) => j)];
  for (let i = 1; i <= x.length; i += 1) {
    const row = [i];
    const above = rows[i - 1] ?? [];
    for (let j = 1; j <= y.length; j += 1) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      let best = Math.min((above[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (above[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) {
        best = Math.min(best, (rows[i - 2]?.[j - 2] ?? 0) + 1);
      }
      row[j] = best;
    }
    rows.push(row);
  }
  return rows[x.length]?.[y.length] ?? 0;
}

/**
 * The candidate nearest to `name`, if it is near enough to be a likely typo
 * (at most a third of the name's length, and at least 1, edits away), or one
 * that starts with it / contains it.
 */
export function nearest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(1, Math.floor(name.length / 3));
  if (bestDistance <= limit) return best;
  const lower = name.toLowerCase();
  for (const candidate of candidates) {
    if (lower.length >= 3 && candidate.toLowerCase().includes(lower)) return candidate;
  }
  return undefined;
}

/** ` Did you mean X?`, or the empty string. */
export function didYouMean(name: string, candidates: readonly string[], shown = (s: string) => s) {
  const match = nearest(name, candidates);
  return match === undefined ? "" : ` Did you mean ${shown(match)}?`;
}
