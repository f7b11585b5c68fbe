/** The inspection a `run` asks for, read from its flags. */
import * as path from "node:path";
import { UsageError } from "../../errors.js";
import { DEFAULT_INSPECT_PORT } from "./server.js";

/** What `run` asked for. */
export interface InspectionRequest {
  /** Live inspection on this port (0 = any free port). */
  live: { port: number; open: boolean } | null;
  /** Absolute path of the JSON-lines log. */
  logFile: string | null;
}

/** The `run` flags that control inspection. */
export interface InspectionArgs {
  inspect?: boolean;
  inspectPort?: number;
  inspectLog?: string;
  open?: boolean;
}

/**
 * Reads the inspection flags: `--open` and `--inspect-port` imply `--inspect`.
 * Null when nothing is to be inspected.
 */
export function inspectionRequestOf(args: InspectionArgs, cwd: string): InspectionRequest | null {
  const port = args.inspectPort ?? DEFAULT_INSPECT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new UsageError(
      `--inspect-port must be a port number (0-65535), not ${args.inspectPort}.`,
      {
        option: "--inspect-port",
        hint: "Use 0 for any free port.",
      },
    );
  }
  if (args.inspectLog !== undefined && args.inspectLog.trim() === "") {
    throw new UsageError("--inspect-log needs a file name.", { option: "--inspect-log" });
  }
  const live = args.inspect === true || args.open === true || args.inspectPort !== undefined;
  const logFile = args.inspectLog === undefined ? null : path.resolve(cwd, args.inspectLog);
  if (!live && !logFile) return null;
  return { live: live ? { port, open: args.open === true } : null, logFile };
}
