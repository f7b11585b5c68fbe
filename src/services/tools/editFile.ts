import path from "node:path";
import { z } from "zod";
import { atomicWrite } from "./atomicWrite.js";
import { resolveInWorkspace, toWorkspacePath } from "./pathJail.js";
import { openDirectory, openFileForReading } from "./safeOpen.js";
import type { Tool } from "./types.js";

/** Largest file `edit_file` loads (bytes); bigger files are refused with a hint. */
export const EDIT_FILE_MAX_BYTES = 5 * 1024 * 1024;

const editFileSchema = z.object({
  path: z.string().describe("File to edit, relative to the workspace root. It must exist."),
  oldText: z
    .string()
    .min(1, "must not be empty: use write_file to create or replace a whole file")
    .describe(
      "The exact text to replace, including whitespace and line breaks. It must occur exactly once in the file; include surrounding lines to make it unique.",
    ),
  newText: z.string().describe("The text to put in its place (may be empty to delete it)."),
});

/** Arguments of {@link editFileTool}. */
export type EditFileArgs = z.infer<typeof editFileSchema>;

/** Positions of every occurrence of `needle`, overlapping ones included. */
function occurrences(haystack: string, needle: string): number[] {
  const found: number[] = [];
  for (let at = haystack.indexOf(needle); at !== -1; at = haystack.indexOf(needle, at + 1)) {
    found.push(at);
  }
  return found;
}

/** 1-based line number of character `index`. */
function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < index; i = text.indexOf("\n", i + 1)) line += 1;
  return line;
}

/** Why an exact match failed, when a near match explains it. */
function nearMissHint(text: string, oldText: string): string {
  if (oldText.includes("\n") && !oldText.includes("\r\n") && text.includes("\r\n")) {
    const crlf = oldText.replaceAll("\n", "\r\n");
    if (text.includes(crlf)) {
      return " The file uses CRLF (\\r\\n) line endings; the text matches once they are used in oldText.";
    }
  }
  const squash = (s: string) => s.replace(/\s+/g, " ").trim();
  if (squash(oldText) !== "" && squash(text).includes(squash(oldText))) {
    return " A match exists if whitespace is ignored: copy the exact indentation and line breaks from read_file.";
  }
  return " Read the file again with read_file and copy the text exactly.";
}

/** `edit_file`: replaces one exact, unique piece of text in a workspace file. */
export const editFileTool: Tool<EditFileArgs> = {
  name: "edit_file",
  description:
    "Replace one exact piece of text in an existing workspace file. oldText must match exactly once (whitespace included); add surrounding lines when it is not unique.",
  schema: editFileSchema,
  kind: "edit",
  access: (args) => ({ kind: "edit", target: args.path }),
  async run(args, ctx) {
    const real = await resolveInWorkspace(ctx, args.path, { mustExist: true, write: true });
    const shown = toWorkspacePath(ctx, real);
    // Opened again component by component: a link swapped in since the check is refused.
    const handle = await openFileForReading(ctx, real);
    let stats: Awaited<ReturnType<typeof handle.stat>>;
    let bytes: Buffer;
    try {
      stats = await handle.stat();
      if (stats.isDirectory()) {
        throw new Error(`"${shown}" is a directory; edit_file edits files.`);
      }
      if (!stats.isFile()) {
        throw new Error(`"${shown}" is not a regular file; edit_file cannot edit it.`);
      }
      if (stats.size > EDIT_FILE_MAX_BYTES) {
        throw new Error(
          `"${shown}" is ${stats.size.toLocaleString("en-US")} bytes, more than edit_file handles (${EDIT_FILE_MAX_BYTES.toLocaleString("en-US")}). Use shell_exec (sed) or rewrite it with write_file.`,
        );
      }
      bytes = await handle.readFile(ctx.signal ? { signal: ctx.signal } : {});
    } finally {
      await handle.close();
    }
    if (bytes.includes(0)) {
      throw new Error(
        `"${shown}" looks like a binary file (it contains NUL bytes); edit_file only edits text files.`,
      );
    }
    const text = bytes.toString("utf8");
    if (args.oldText === args.newText) {
      throw new Error("oldText and newText are the same; nothing would change.");
    }

    const found = occurrences(text, args.oldText);
    if (found.length === 0) {
      throw new Error(
        `oldText was not found in "${shown}" (0 matches).${nearMissHint(text, args.oldText)}`,
      );
    }
    if (found.length > 1) {
      const lines = [...new Set(found.map((at) => lineOf(text, at)))];
      const shownLines =
        lines.length > 10 ? `${lines.slice(0, 10).join(", ")}, …` : lines.join(", ");
      throw new Error(
        `oldText occurs ${found.length} times in "${shown}" (lines ${shownLines}); it must occur exactly once. Include more surrounding context in oldText to pick one.`,
      );
    }

    const at = found[0] as number;
    const updated = text.slice(0, at) + args.newText + text.slice(at + args.oldText.length);
    const dir = await openDirectory(ctx, path.dirname(real));
    try {
      await atomicWrite(dir, path.basename(real), updated, stats.mode & 0o7777, ctx.signal);
    } finally {
      await dir.close();
    }
    const removed = args.oldText.split("\n").length;
    const added = args.newText === "" ? 0 : args.newText.split("\n").length;
    return `Edited ${shown}: replaced ${removed} line${removed === 1 ? "" : "s"} at line ${lineOf(text, at)} with ${added} line${added === 1 ? "" : "s"}.`;
  },
};
