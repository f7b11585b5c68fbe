/**
 * The JSON of `ravenclaws serve`'s HTTP API: every response body and every
 * Server-Sent Event. Types only and self-contained (no imports), so the
 * dashboard's bundle can build against it without pulling in the server.
 *
 * Routes (all JSON, UTF-8):
 *
 * | method | path                               | request body               | response                   |
 * | ------ | ---------------------------------- | -------------------------- | -------------------------- |
 * | GET    | `/api/heartbeats`                  |                            | {@link HeartbeatList}      |
 * | POST   | `/api/heartbeats`                  | {@link CreateHeartbeatRequest} | 201 {@link HeartbeatDetail} |
 * | GET    | `/api/heartbeats/:id`              |                            | {@link HeartbeatDetail}    |
 * | GET    | `/api/heartbeats/:id/journal`      | query `limit`, `type`      | {@link JournalResponse}    |
 * | POST   | `/api/heartbeats/:id/wake`         | `{}`                       | 202 {@link ActionResponse} |
 * | POST   | `/api/heartbeats/:id/stop`         | `{}`                       | 202 {@link ActionResponse} |
 * | POST   | `/api/heartbeats/:id/start`        | `{}`                       | 202 {@link ActionResponse} |
 * | POST   | `/api/heartbeats/:id/approve`      | {@link ApproveRequest}     | {@link DecisionResponse}   |
 * | POST   | `/api/heartbeats/:id/deny`         | {@link DenyRequest}        | {@link DecisionResponse}   |
 * | GET    | `/api/events`                      |                            | `text/event-stream` of {@link ApiEvent} |
 * | GET    | `/api/machine`                     |                            | {@link MachineResponse}    |
 * | GET    | `/api/health`                      |                            | {@link HealthResponse}     |
 *
 * Every error is an {@link ApiError} with a 4xx or 5xx status; never a stack trace.
 *
 * Access: on 127.0.0.1 (the default) no token is needed unless `--token` is
 * given. With a token (required for a non-loopback `--host`) every request
 * carries it: `Authorization: Bearer <token>`, or the cookie
 * `ravenclaws_token`, or `?token=<token>`. Opening `/?token=<token>` once sets
 * the cookie (HttpOnly, SameSite=Strict) and redirects to `/`, so the page's
 * `fetch` and `EventSource` calls need not know the token. State-changing
 * requests (POST) must send `Content-Type: application/json` and, when they
 * send `Origin`, the server's own origin.
 */

/** Token usage, as in the state file. */
export interface ApiUsage {
  /** Model calls made. */
  calls: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Calls whose tokens are estimated (the server sent no usage); absent when none. */
  estimatedCalls?: number;
  /** US dollars at the configured prices; absent without prices. */
  costUsd?: number;
}

/**
 * What a heartbeat is doing, as the server's host sees it:
 * - `sleeping`: waiting for its next tick;
 * - `queued`: its tick is due and waits for a free tick slot (`--max-concurrent-ticks`);
 * - `ticking`: working on a tick (see `state` for the phase);
 * - `stopped`: stopped on purpose (API, page or `ravenclaws stop`); runs again only after `start`;
 * - `completed` / `failed`: ended;
 * - `unavailable`: its state file cannot be used, or another process (a `run`) holds it; see `problem`.
 */
export type HeartbeatStatus =
  | "sleeping"
  | "queued"
  | "ticking"
  | "stopped"
  | "completed"
  | "failed"
  | "unavailable";

/** How the last finished tick went; `idle`: nothing needed doing. */
export type TickOutcome = "ok" | "idle" | "failed" | "interrupted";

/** One heartbeat in the overview (`GET /api/heartbeats`). */
export interface HeartbeatSummary {
  id: string;
  /** The goal, clipped to 200 characters (the detail has it whole). */
  goal: string;
  status: HeartbeatStatus;
  /**
   * The machine's active state as a dotted path (`sleeping`, `assessing`,
   * `executing.calling`, `persisting`, `completed`): live while a tick runs,
   * else the state it was saved in.
   */
  state: string;
  /** Finished ticks. */
  tick: number;
  /** When the next tick is due (ISO time), null when none is planned. */
  nextTickAt: string | null;
  /** Total tokens used. */
  tokens: number;
  /** US dollars at the configured prices; null without prices. */
  costUsd: number | null;
  /** Outcome of the last finished tick; null before the first. */
  lastOutcome: TickOutcome | null;
  /** Why it ended or stopped (`goal-met`, `max-ticks`, `budget`, `signal`, …); null while it runs. */
  reason: string | null;
  /** Tool calls waiting for a decision. */
  pendingApprovals: number;
  /** Its workspace. */
  workdir: string;
  updatedAt: string | null;
  /** Why it is `unavailable`; null otherwise. */
  problem: string | null;
}

/** `GET /api/heartbeats`. */
export interface HeartbeatList {
  heartbeats: HeartbeatSummary[];
  /** The server's clock (ISO time), for countdowns. */
  now: string;
}

/** The model's last assessment. */
export interface ApiAssessment {
  goalComplete: boolean;
  actionNeeded: boolean;
  assessment: string;
  progressSummary: string;
}

/** A tool call waiting for an approval. */
export interface PendingApprovalCall {
  callId: string;
  tool: string;
  /** The arguments as the model gave them (JSON text, clipped). */
  args: string;
  /** The `ask` rule that asked, when one did. */
  rule: string | null;
  /** What the call would do, in words (`write notes.md`). */
  what?: string;
  /** Since when it waits (ISO time). */
  since: string;
}

/**
 * A setting value as saved with a heartbeat. Keys are the names of the
 * settings table (`tickInterval`, `maxTicks`, `model`, `baseUrl`, …); null =
 * unset. Never the API key.
 */
export type SavedSettingValue = string | number | boolean | null | string[];

/** One heartbeat in full (`GET /api/heartbeats/:id`, and `POST /api/heartbeats`' answer). */
export interface HeartbeatDetail extends HeartbeatSummary {
  /** The whole goal. */
  goalText: string;
  createdAt: string | null;
  /** 0 = unlimited (from the saved settings). */
  maxTicks: number;
  /** The rolling progress summary. */
  progress: string;
  lastAssessment: ApiAssessment | null;
  lastPlan: { steps: string[] } | null;
  lastResult: string | null;
  usage: ApiUsage;
  /** The error it ended with (or the last fatal one). */
  error: { code: string; message: string; hint?: string } | null;
  /** The saved settings (heartbeat-scoped settings of the settings table; no secrets). */
  settings: Record<string, SavedSettingValue>;
  /** The calls waiting for a decision. */
  approvals: PendingApprovalCall[];
}

/** A tool call as a tick's journal line lists it. */
export interface TickToolCall {
  callId: string;
  name: string;
  status: string;
}

/** The journal line written for each finished (or interrupted) tick. */
export interface TickJournalEntry {
  type: "tick";
  seq?: number;
  tick: number;
  status: "ok" | "idle" | "failed" | "interrupted";
  wakeReason: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  goalComplete: boolean;
  assessment: string | null;
  plan: string[] | null;
  result: string | null;
  errors: Array<{ code: string; message: string; phase?: string }>;
  /** This tick's usage. */
  usage: ApiUsage;
  /** The heartbeat's usage after this tick. */
  totalUsage: ApiUsage;
  modelCalls: Array<{ phase: string; totalTokens: number; [key: string]: unknown }>;
  toolCalls: TickToolCall[];
  /** Where the heartbeat went next. */
  next: string;
  nextTickAt: string | null;
}

/**
 * A journal line. Tick lines are typed in full; the others (`run`, `tool`,
 * `tool-intent`, `tool-rerun`, `skip`, `end`, `recover`, approvals) carry
 * at least `type`.
 */
export type JournalEntry =
  | TickJournalEntry
  | { type: string; seq?: number; [key: string]: unknown };

/** `GET /api/heartbeats/:id/journal?limit=N&type=tick,end`: the last `limit` entries (default 500, at most 5,000), oldest first. */
export interface JournalResponse {
  id: string;
  entries: JournalEntry[];
  /** True when older entries were left out by `limit`. */
  truncated: boolean;
}

/**
 * `POST /api/heartbeats`: the goal and settings under the names of the
 * settings table (`src/settings.ts`; README "Configuration"), validated like
 * the CLI's flags. Only heartbeat-scoped settings, plus `goal`, `id` and
 * `workdir` (default: the server's workdir). The model endpoint defaults to
 * the server's `--base-url` / `--model`; the API key is the server's and
 * cannot be given here.
 */
export interface CreateHeartbeatRequest {
  goal: string;
  id?: string;
  workdir?: string;
  tickInterval?: number;
  maxTicks?: number;
  model?: string;
  baseUrl?: string;
  [setting: string]: SavedSettingValue | undefined;
}

/** `POST /api/heartbeats/:id/{wake,stop,start}`: accepted; the change shows in the events. */
export interface ActionResponse {
  ok: true;
  action: "wake" | "stop" | "start";
  heartbeat: HeartbeatSummary;
}

/** `POST /api/heartbeats/:id/approve`: one call (by id) or, without `callId`, every pending call of the heartbeat. */
export interface ApproveRequest {
  callId?: string;
}

/** `POST /api/heartbeats/:id/deny`. */
export interface DenyRequest {
  callId?: string;
  reason?: string;
}

/** The answer to approve / deny. */
export interface DecisionResponse {
  ok: true;
  decision: "approve" | "deny";
  /** The calls decided. */
  callIds: string[];
}

/** `GET /api/machine`: the statechart definitions, for drawing. */
export interface MachineResponse {
  /** The id of the top machine (`heartbeat`). */
  root: string;
  /** `machine.toJSON()` of the heartbeat machine and each machine it invokes (the tool loop), by machine id. */
  machines: Record<string, MachineDefinitionJson>;
  /** Which state invokes which machine: `{ "heartbeat.executing": "toolLoop" }`. */
  invokes: Record<string, string>;
}

/** XState's JSON of a state node (`toJSON()`), reduced to what a drawing needs; other fields may be present. */
export interface MachineDefinitionJson {
  id: string;
  key: string;
  type: "atomic" | "compound" | "parallel" | "final" | "history";
  initial?: { target: string[] } | undefined;
  states: Record<string, MachineDefinitionJson>;
  on: Record<
    string,
    Array<{ target?: string[]; guard?: { type: string } | null; eventType: string }>
  >;
  invoke: Array<{ id: string; src: string | { id?: string } }>;
  [key: string]: unknown;
}

/** `GET /api/health`. */
export interface HealthResponse {
  ok: true;
  version: string;
  heartbeats: number;
}

/** Every error response: `{ error: { code, message, field? } }`. */
export interface ApiError {
  error: {
    /** Stable code: `bad-request`, `invalid-setting`, `not-found`, `unauthorized`, `forbidden-origin`, `unsupported-media-type`, `payload-too-large`, `conflict`, `not-implemented`, `internal`, … */
    code: string;
    /** What went wrong and what to do. */
    message: string;
    /** The request field at fault (a setting's name, `goal`, `callId`). */
    field?: string;
  };
}

/** `state`: a heartbeat entered a machine state, or its status changed (queued, stopped, …). */
export interface StateEvent {
  id: string;
  /** Dotted state path (`executing.acting`). */
  state: string;
  at: string;
  /** The heartbeat's summary after the change. */
  heartbeat: HeartbeatSummary;
}

/** `tick`: a tick was persisted (its journal line) with the heartbeat's summary after it. */
export interface TickEvent {
  id: string;
  entry: TickJournalEntry;
  heartbeat: HeartbeatSummary;
}

/** `tool`: a tool call finished. */
export interface ToolEvent {
  id: string;
  tick: number;
  callId: string;
  name: string;
  status: string;
  at: string;
}

/** `approval`: a call started waiting for a decision, or was decided. */
export interface ApprovalEvent {
  id: string;
  kind: "pending" | "decided";
  callId: string;
  /** The tool, when the host says. */
  tool?: string;
  /** For `decided`. */
  decision?: "approve" | "deny";
  at: string;
}

/** `heartbeat`: one was added, changed (status, stopped, started, ended) or removed. */
export interface HeartbeatEvent {
  kind: "added" | "updated" | "removed";
  id: string;
  /** Absent for `removed`. */
  heartbeat?: HeartbeatSummary;
}

/** SSE event name → its `data` (JSON). Comments (`: keep-alive`) arrive every 15 s. */
export interface ApiEventMap {
  state: StateEvent;
  tick: TickEvent;
  tool: ToolEvent;
  approval: ApprovalEvent;
  heartbeat: HeartbeatEvent;
}

/** One Server-Sent Event of `GET /api/events` (`event: <type>`, `data: <JSON>`). */
export type ApiEvent = {
  [K in keyof ApiEventMap]: { type: K; data: ApiEventMap[K] };
}[keyof ApiEventMap];

/** The SSE event names. */
export const API_EVENT_TYPES = ["state", "tick", "tool", "approval", "heartbeat"] as const;
