/**
 * Watching a heartbeat: live in the Stately inspector (`run --inspect`), and
 * offline as a JSON-lines log of the same inspection events (`run
 * --inspect-log FILE`), which `inspect replay FILE` serves to the inspector
 * later. Everything that leaves the process goes through {@link sanitizeInspectionEvent}:
 * secrets redacted, large strings and arrays truncated.
 *
 * The live path is `@statelyai/inspect`'s `createWebSocketInspector` talking
 * to a small inspector server of ours on 127.0.0.1. Ours rather than
 * `createInspectorServer` from `@statelyai/inspect/server` (0.7.2) because that
 * one listens on every interface (the agent's goal, progress and tool output
 * would be readable from the network), cannot use port 0 (its bridge page
 * embeds the port it was given), crashes the process when the port is taken
 * (its server has no error listener we can reach), keeps only the last 200
 * events (a replayed log would lose its first events, the actor definitions),
 * and does not close open connections when stopped. The wire protocol is the
 * same: every message a client sends is kept and relayed to the other
 * clients, and a bridge page relays them into the Stately inspector iframe.
 */
export { type Inspection, startInspection } from "./attach.js";
export { JsonLinesAdapter, readInspectionLog } from "./log.js";
export { type InspectionArgs, type InspectionRequest, inspectionRequestOf } from "./request.js";
export {
  INSPECT_ARRAY_LIMIT,
  INSPECT_DEPTH_LIMIT,
  INSPECT_STRING_LIMIT,
  INSPECTION_EVENT_TYPES,
  type SanitizeOptions,
  sanitizeInspectionEvent,
  sanitizeValue,
  serializeInspectionEvent,
} from "./sanitize.js";
export {
  DEFAULT_INSPECT_PORT,
  type InspectorServer,
  openInBrowser,
  type RetainLimits,
  STATELY_INSPECTOR_URL,
  startInspectorServer,
} from "./server.js";
