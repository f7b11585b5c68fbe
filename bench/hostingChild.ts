/**
 * One hosting measurement in a fresh process, so its RSS is the host's own:
 * `node --expose-gc hostingChild.js <rss|lateness> <dir> <count> <intervalSec> <durationSec> <maxConcurrentTicks> <leadMs>`.
 * Prints one JSON line with the figures.
 */
import { measureLateness, measureRss } from "./hostingWork.js";

const [mode, dir = ".", count, interval, duration, max, lead] = process.argv.slice(2);
const run = {
  dir,
  count: Number(count),
  intervalSec: Number(interval),
  durationMs: Number(duration) * 1000,
  maxConcurrentTicks: Number(max),
  leadMs: Number(lead),
};
const figures = mode === "rss" ? await measureRss(run) : await measureLateness(run);
process.stdout.write(`${JSON.stringify(figures)}\n`);
process.exit(0);
