/**
 * The offline inspection log: `run --inspect-log FILE` appends one sanitized
 * JSON line per inspection event, and `inspect replay FILE` reads it back
 * (checked line by line) to serve it to the inspector later.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import * as fs from "node:fs/promises";
import type { StatelyInspectionEvent } from "@statelyai/inspect";
import { UsageError } from "../../errors.js";
import {
  INSPECTION_EVENT_TYPES,
  type SanitizeOptions,
  serializeInspectionEvent,
} from "./sanitize.js";

/** An inspection adapter that appends one JSON line per event to a file. */
export class JsonLinesAdapter {
  private fd: number | null;
  private failed = false;

  /** Opens (creates or appends to) `file`; throws a {@link UsageError} when it cannot. */
  constructor(
    readonly file: string,
    private readonly options: SanitizeOptions & { onError?: (error: unknown) => void } = {},
  ) {
    try {
      this.fd = openSync(file, "a", 0o600);
    } catch (error) {
      throw new UsageError(`Cannot open the inspection log ${file}: ${(error as Error).message}`, {
        option: "--inspect-log",
        code: "inspect-log-unwritable",
        hint: "Pass a file in an existing, writable directory.",
      });
    }
  }

  send(event: StatelyInspectionEvent): void {
    if (this.fd === null || this.failed) return;
    try {
      writeSync(this.fd, `${serializeInspectionEvent(event, this.options)}\n`);
    } catch (error) {
      // Inspection must never bring the heartbeat down: report once and stop logging.
      this.failed = true;
      this.options.onError?.(error);
    }
  }

  /** Closes the file. */
  stop(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}

/** Reads a captured inspection log; a bad file is a {@link UsageError} naming the file and line. */
export async function readInspectionLog(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(
      `Cannot read the inspection log ${file}: ${code === "ENOENT" ? "no such file" : (error as Error).message}.`,
      {
        code: "inspect-log-unreadable",
        hint: "Capture one with `ravenclaws run … --inspect-log FILE`.",
      },
    );
  }
  const messages: string[] = [];
  const lines = text.split("\n");
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "") continue;
    const where = `${file}:${index + 1}`;
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch (error) {
      throw new UsageError(`${where} is not JSON: ${(error as Error).message}`, {
        code: "inspect-log-invalid",
        hint: "An inspection log has one JSON object per line, as `run --inspect-log` writes it.",
      });
    }
    const e = event as { type?: unknown; sessionId?: unknown } | null;
    if (
      typeof e !== "object" ||
      e === null ||
      !(INSPECTION_EVENT_TYPES as readonly unknown[]).includes(e.type) ||
      typeof e.sessionId !== "string"
    ) {
      throw new UsageError(
        `${where} is not an inspection event (expected an object with "type" ${INSPECTION_EVENT_TYPES.join(", ")} and a "sessionId").`,
        {
          code: "inspect-log-invalid",
          hint: "An inspection log has one JSON object per line, as `run --inspect-log` writes it.",
        },
      );
    }
    messages.push(line);
  }
  if (messages.length === 0) {
    throw new UsageError(`The inspection log ${file} has no events.`, {
      code: "inspect-log-empty",
      hint: "Capture one with `ravenclaws run … --inspect-log FILE`.",
    });
  }
  return messages;
}
