/**
 * Entry point of `npm run bench`
 * (`node --expose-gc bench/dist/bench/main.js [--quick] [--out FILE] [--markdown] [--only PART,…]`):
 * prints the table, writes the JSON.
 */
import { formatReport, parseBenchArgs, runBench } from "./bench.js";

const { markdown, ...options } = parseBenchArgs(process.argv.slice(2));
const result = await runBench(options);
process.stdout.write(`${formatReport(result, markdown)}\n`);
