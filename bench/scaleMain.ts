/**
 * Entry point of `npm run bench:scale`
 * (`node bench/dist/bench/scaleMain.js [--heartbeats N] [--interval S] [--workers 4,1]
 * [--concurrency C] [--rounds R] [--lead S] [--grace S] [--model-delay MS] [--idle-recheck D]
 * [--database-url URL] [--out FILE] [--markdown]`): prints the table, writes the JSON.
 */
import { formatScaleReport, parseScaleArgs, runScale } from "./scale.js";

const { markdown, ...options } = parseScaleArgs(process.argv.slice(2));
const result = await runScale(options);
process.stdout.write(`${formatScaleReport(result, markdown)}\n`);
