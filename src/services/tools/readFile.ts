import { z } from "zod";
import { resolveInWorkspace, toWorkspacePath } from "./pathJail.js";
import { openFileForReading } from "./safeOpen.js";
import type { Tool } from "./types.js";

/** Most characters of file text returned by one `read_file` call. */
export const READ_FILE_MAX_CHARS = 100_000;

/** Bytes inspected for a NUL byte to decide that a file is binary. */
const BINARY_SNIFF_BYTES = 8 * 1024;

const readFileSchema = z.object({
  path: z.string().describe("File to read, relative to the workspace root."),
  offset: z
    .number()
    .int()
    .min(1)
    .optional()
    .describe("1-based line number to start reading at. Defaults to 1."),
  limit: z
    .number()
    .int()
    .min(1)
    .optional()
    .describe("Maximum number of lines to return. Defaults to the whole file."),
});

/** Arguments of {@link readFileTool}. */
export type ReadFileArgs = z.infer<typeof readFileSchema>;

/** Lines picked from a file, with what the model needs to continue. */
interface Selection {
  text: string;
  /** Last line number (1-based) included, fully or partly; `offset - 1` if none. */
  lastLine: number;
  /** Lines seen in the file; exact only when `more` is false. */
  linesSeen: number;
  /** Whether the file goes on after `lastLine`. */
  more: boolean;
  /** Whether the character cap cut the output. */
  capped: boolean;
  /** Whether `lastLine` was cut in the middle. */
  partialLine: boolean;
}

/**
 * Streams `chunks` and keeps lines `offset .. offset + limit - 1`, line endings
 * included, stopping at {@link READ_FILE_MAX_CHARS} characters.
 */
async function selectLines(
  chunks: AsyncIterable<string>,
  offset: number,
  limit: number,
): Promise<Selection> {
  const lastWanted = offset - 1 + limit;
  let text = "";
  let lineNo = 1;
  let carry = "";
  const result = (
    more: boolean,
    flags: { capped?: boolean; partialLine?: boolean } = {},
  ): Selection => ({
    text,
    lastLine: flags.partialLine ? lineNo : lineNo - 1,
    linesSeen: lineNo - 1,
    more,
    capped: flags.capped ?? false,
    partialLine: flags.partialLine ?? false,
  });
  // Takes one line (with its ending); returns a finished selection when reading should stop.
  const take = (line: string): Selection | undefined => {
    if (lineNo > lastWanted) return result(true);
    if (lineNo >= offset) {
      if (text.length + line.length > READ_FILE_MAX_CHARS) {
        if (text.length > 0) return result(true, { capped: true });
        let cut = READ_FILE_MAX_CHARS;
        // Do not split a surrogate pair.
        const code = line.charCodeAt(cut - 1);
        if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
        text = line.slice(0, cut);
        return result(true, { capped: true, partialLine: true });
      }
      text += line;
    }
    lineNo += 1;
    return undefined;
  };

  for await (const chunk of chunks) {
    carry += chunk;
    let start = 0;
    for (let nl = carry.indexOf("\n"); nl !== -1; nl = carry.indexOf("\n", start)) {
      const done = take(carry.slice(start, nl + 1));
      if (done) return done;
      start = nl + 1;
    }
    carry = carry.slice(start);
  }
  if (carry !== "") {
    const done = take(carry);
    if (done) return done;
  }
  return result(false);
}

/** `read_file`: returns the text of a file in the workspace, optionally a range of lines. */
export const readFileTool: Tool<ReadFileArgs> = {
  name: "read_file",
  description:
    "Read a text file in the workspace. Use offset and limit (in lines) to read part of a large file; output is capped at 100,000 characters.",
  schema: readFileSchema,
  kind: "read",
  access: (args) => ({ kind: "read", target: args.path }),
  async run(args, ctx) {
    const real = await resolveInWorkspace(ctx, args.path, { mustExist: true });
    const shown = toWorkspacePath(ctx, real);
    // Opened again component by component: a link swapped in since the check is refused.
    const handle = await openFileForReading(ctx, real);
    try {
      const stats = await handle.stat();
      if (stats.isDirectory()) {
        throw new Error(
          `"${shown}" is a directory, not a file. Use list_dir to see what it contains.`,
        );
      }
      if (!stats.isFile()) {
        throw new Error(
          `"${shown}" is not a regular file (device, socket or pipe); it cannot be read.`,
        );
      }
      const sniff = Buffer.alloc(BINARY_SNIFF_BYTES);
      const { bytesRead } = await handle.read(sniff, 0, BINARY_SNIFF_BYTES, 0);
      if (sniff.subarray(0, bytesRead).includes(0)) {
        throw new Error(
          `"${shown}" looks like a binary file (it contains NUL bytes); read_file only reads text files.`,
        );
      }
      if (bytesRead === 0) return `[The file "${shown}" is empty.]`;

      const offset = args.offset ?? 1;
      const limit = args.limit ?? Number.POSITIVE_INFINITY;
      const stream = handle.createReadStream({
        encoding: "utf8",
        start: 0,
        autoClose: false,
        ...(ctx.signal ? { signal: ctx.signal } : {}),
      });
      let selection: Selection;
      try {
        selection = await selectLines(stream as AsyncIterable<string>, offset, limit);
      } finally {
        stream.destroy();
      }

      if (selection.text === "" && !selection.more) {
        return `[The file "${shown}" has ${selection.linesSeen} lines; offset ${offset} is past the end.]`;
      }
      const notes: string[] = [];
      const first = offset;
      const next = selection.lastLine + 1;
      if (selection.capped) {
        notes.push(
          selection.partialLine
            ? `[Output cut at ${READ_FILE_MAX_CHARS.toLocaleString("en-US")} characters in the middle of line ${selection.lastLine}. Use offset=${next} to continue after it.]`
            : `[Output cut at ${READ_FILE_MAX_CHARS.toLocaleString("en-US")} characters: showing lines ${first}-${selection.lastLine}. Use offset=${next} to continue.]`,
        );
      } else if (selection.more) {
        notes.push(
          `[Showing lines ${first}-${selection.lastLine}. The file continues; use offset=${next} to read more.]`,
        );
      }
      if (notes.length === 0) return selection.text;
      const separator = selection.text.endsWith("\n") ? "" : "\n";
      return `${selection.text}${separator}${notes.join("\n")}`;
    } finally {
      await handle.close();
    }
  },
};
