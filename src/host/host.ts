/**
 * The host: runs the heartbeats of one state dir in one process. Each is the
 * same heartbeat actor, store, lock and journal as under `run`
 * (`prepareHeartbeat`/`startHeartbeat` of src/runtime.ts). Between ticks a
 * heartbeat holds no live actor, only a {@link Slot} with its summary: when
 * its tick is due it waits in a FIFO queue for one of
 * `maxConcurrentTicks` slots, is rehydrated from its state file (the restore
 * `run` does after a kill), ticks, persists, and is dropped again once it
 * sleeps. See docs/architecture.md, "The host".
 */
import { randomUUID } from "node:crypto";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { CommandFailedError, LockedError, toErrorInfo, UsageError } from "../errors.js";
import type { HeartbeatContext } from "../machines/heartbeat.types.js";
import { type RunningHeartbeat, startHeartbeat } from "../runtime.js";
import type { StateFile } from "../schemas/stateFile.js";
import {
  FileHeartbeatStore,
  type HeartbeatLock,
  heartbeatPaths,
  type JournalEntry,
  loadStateFile,
  removeStaleTempFiles,
} from "../services/store/index.js";
import { ID_PATTERN, type RunSettings, SETTINGS, type SettingSpec } from "../settings.js";
import { leasePath, readHostRecord, readRequests, setStopped, writeHostRecord } from "./files.js";
import {
  type ControlResult,
  type CreateHeartbeatRequest,
  DEFAULT_MAX_CONCURRENT_TICKS,
  type HeartbeatDetail,
  type HeartbeatSummary,
  type Host,
  type HostEvent,
  type HostedStatus,
  type HostOptions,
  type HostStats,
} from "./types.js";
import { type HeartbeatLlm, HeartbeatWiring } from "./wiring.js";

/** How often the host looks for due ticks and control requests. */
const SCAN_MS = 100;
const REQUEST_POLL_MS = 250;
/** How often the host lease is refreshed (as a lock is). */
const LEASE_REFRESH_MS = 5_000;
/** How often a heartbeat whose lock another process holds is tried again. */
const LOCKED_RETRY_MS = 5_000;

export { heartbeatSettingsOf, pricesOf } from "./wiring.js";

/**
 * A hosted heartbeat's store. Rehydrating restores the snapshot saved in
 * `persisting`, which repeats that persist; the state file already holds
 * exactly that snapshot (seq, status `sleeping`), written by this host, so
 * the repeat is skipped (the journal skips it by seq anyway). Everything
 * else is the store `run` uses.
 */
class HostedStore extends FileHeartbeatStore {
  /** The seq of a sleeping state file this host wrote and is about to restore. */
  skipSeq: number | null = null;

  override save(state: StateFile): Promise<void> {
    const skip = this.skipSeq !== null && state.seq === this.skipSeq && state.status === "sleeping";
    this.skipSeq = null;
    return skip ? Promise.resolve() : super.save(state);
  }
}

/** One hosted heartbeat: light while it sleeps (summary, store, lock), an actor only while it ticks. */
interface Slot {
  id: string;
  store: HostedStore;
  lock: HeartbeatLock | null;
  workdir: string;
  summary: HeartbeatSummary;
  /** `nextTickAt` in ms, for the due scan; Infinity when none. */
  dueMs: number;
  live: RunningHeartbeat | null;
  /** A wake was asked while it was not live, or before it reached `sleeping`. */
  wakePending: boolean;
  /** Set while a stop on purpose is in progress. */
  stopping: boolean;
  /** When to try its lock again (held by another process); 0: not waiting. */
  lockRetryAt: number;
  /** The `seq` of the state file last seen: a restore's repeated write is not a new tick. */
  seq: number;
  /** This host wrote the state file with {@link Slot.seq} (and holds the lock since). */
  wrote: boolean;
  /**
   * Its resolved settings, kept between ticks: the saved ones cannot change
   * while the host holds the lock (only a `run` with other flags changes them).
   */
  settings: RunSettings | null;
  /** The tick in progress (queued into a slot), until its actor is dropped. */
  ticking: Promise<void> | null;
}

/** Dependencies the tests and the bench replace (an in-process model). */
export interface HostDeps {
  /** The model adapter for a heartbeat's resolved settings (default: the openai client over HTTP). */
  llmFor?(settings: RunSettings): Promise<HeartbeatLlm>;
  /** The user config (the API key may come from it); default: the conf store. */
  userConfig?: { path: string; data: Record<string, unknown> } | null;
}

const clip = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max)}…`);

const stateText = (value: unknown) => (typeof value === "string" ? value : JSON.stringify(value));

/** Creates a host and adopts the heartbeats of its state dir (unless `adoptExisting` is false). */
export async function createHost(options: HostOptions, deps: HostDeps = {}): Promise<Host> {
  const host = new HeartbeatHost(options, deps);
  await host.open();
  return host;
}

class HeartbeatHost implements Host {
  private readonly slots = new Map<string, Slot>();
  private readonly queue: Slot[] = [];
  private readonly listeners = new Set<(event: HostEvent) => void>();
  private readonly now: () => number;
  private readonly max: number;
  private running = 0;
  private closed = false;
  private scanTimer: NodeJS.Timeout | undefined;
  private requestTimer: NodeJS.Timeout | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private readonly lease: string;
  /** Settings, model clients, toolboxes, notifiers: shared with the workers (./wiring.ts). */
  private readonly wiring: HeartbeatWiring;
  private readonly redact: (text: string) => string = (t) => t;

  constructor(
    private readonly options: HostOptions,
    deps: HostDeps,
  ) {
    this.now = options.now ?? Date.now;
    this.max = Math.max(1, options.maxConcurrentTicks ?? DEFAULT_MAX_CONCURRENT_TICKS);
    this.lease = leasePath(options.stateDir);
    this.wiring = new HeartbeatWiring({
      env: options.env,
      stateDir: options.stateDir,
      now: this.now,
      ...(deps.llmFor ? { llmFor: deps.llmFor } : {}),
      ...(deps.userConfig !== undefined ? { userConfig: deps.userConfig } : {}),
    });
  }

  /** Takes the lease, adopts the heartbeats found, starts the scans. */
  async open(): Promise<void> {
    await fs.mkdir(this.options.stateDir, { recursive: true, mode: 0o700 });
    const { acquireLock } = await import("../services/store/index.js");
    // The lease is itself a lock: two hosts of one state dir exclude each other.
    const leaseLock = await acquireLock(this.lease).catch((error: unknown) => {
      if (error instanceof LockedError) {
        throw new LockedError(
          `Another host already serves ${this.options.stateDir}: ${this.lease} is held by ${error.holder ? `pid ${error.holder.pid} on ${error.holder.host}` : "another process"}.`,
          this.lease,
          error.holder,
          { hint: "Stop that `ravenclaws serve` first, or serve another state dir." },
        );
      }
      throw error;
    });
    this.leaseRelease = () => leaseLock.release();
    this.leaseTimer = setInterval(() => {
      const at = new Date();
      fs.utimes(this.lease, at, at).catch(() => {});
    }, LEASE_REFRESH_MS);
    this.leaseTimer.unref();
    if (this.options.adoptExisting !== false) await this.adoptAll();
    this.scanTimer = setInterval(() => this.scan(), SCAN_MS);
    this.requestTimer = setInterval(() => void this.pollRequests(), REQUEST_POLL_MS);
  }

  private leaseRelease: () => Promise<void> = async () => {};

  // ---- the Host interface -------------------------------------------------

  list(): HeartbeatSummary[] {
    const rows: HeartbeatSummary[] = [];
    for (const slot of this.slots.values()) rows.push({ ...slot.summary });
    return rows;
  }

  async get(id: string): Promise<HeartbeatDetail | null> {
    const slot = this.slots.get(id);
    if (!slot) return null;
    const file = await loadStateFile(slot.store.paths.stateFile).catch(() => null);
    return {
      ...slot.summary,
      goalText: file?.goal ?? slot.summary.goal,
      createdAt: file?.createdAt ?? null,
      progress: file?.progress ?? "",
      lastAssessment: file?.lastAssessment ?? null,
      lastPlan: file?.lastPlan ?? null,
      lastResult: file?.lastResult ?? null,
      settings: file?.settings ?? {},
      stateFile: slot.store.paths.stateFile,
      journal: slot.store.paths.journal,
      error: file?.error ? { code: file.error.code, message: file.error.message } : null,
    };
  }

  async create(request: CreateHeartbeatRequest): Promise<HeartbeatSummary> {
    this.checkOpen();
    const goal = typeof request.goal === "string" ? request.goal.trim() : "";
    if (!goal) {
      throw new UsageError("goal is required: a new heartbeat needs a goal.", {
        option: "goal",
        code: "goal-required",
      });
    }
    const id = request.id ?? randomUUID();
    if (typeof id !== "string" || !ID_PATTERN.test(id)) {
      throw new UsageError(`id ${JSON.stringify(id)} is not a valid heartbeat id.`, {
        option: "id",
        code: "bad-id",
        hint: "Letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128.",
      });
    }
    if (this.slots.has(id)) {
      throw new UsageError(`A heartbeat "${id}" already exists.`, { option: "id", code: "exists" });
    }
    const given = request.settings ?? {};
    for (const key of Object.keys(given)) {
      const spec = (SETTINGS as Record<string, SettingSpec>)[key];
      if (key === "apiKey") {
        throw new UsageError("apiKey cannot be set per heartbeat: the key is the host's.", {
          option: "apiKey",
          code: "secret-refused",
        });
      }
      if (spec?.scope !== "heartbeat") {
        throw new UsageError(`${key} is not a heartbeat setting.`, {
          option: key,
          code: "unknown-setting",
          hint: "Use the names of the settings table (README), e.g. tickInterval, maxTicks, model.",
        });
      }
    }
    const workdir = path.resolve(this.options.workdir, request.workdir ?? ".");
    const stat = await fs.stat(workdir).catch(() => null);
    if (!stat?.isDirectory()) {
      throw new UsageError(`workdir ${workdir} is not an existing directory.`, {
        option: "workdir",
        code: "bad-workdir",
      });
    }
    const paths = heartbeatPaths(this.options.stateDir, id);
    if (await loadStateFile(paths.stateFile).catch(() => true)) {
      throw new UsageError(`A heartbeat "${id}" already exists in ${this.options.stateDir}.`, {
        option: "id",
        code: "exists",
      });
    }
    const settings = await this.resolve(asFlags({ ...this.options.defaults, ...given, goal, id }));
    const store = this.newStore(id);
    const lock = await store.acquireLock({ lease: this.lease });
    const realWorkdir = await fs.realpath(workdir);
    await writeHostRecord(this.options.stateDir, id, {
      schemaVersion: 1,
      workdir: realWorkdir === this.options.workdir ? null : realWorkdir,
      stopped: null,
    });
    const slot = this.newSlot(id, store, realWorkdir, goal);
    slot.lock = lock;
    this.slots.set(id, slot);
    try {
      // The first write (status sleeping, due now) happens here; the tick runs in a slot.
      const running = await this.prepare(slot, settings, goal);
      await new Promise<void>((resolve, reject) => {
        const persisted = (file: StateFile) => {
          this.applyFile(slot, file);
          resolve();
        };
        slot.live = running;
        this.onFirstPersist.set(id, persisted);
        startHeartbeat(running);
        running.done.then(() => resolve(), reject);
      });
      running.actor.stop();
      slot.live = null;
      this.onFirstPersist.delete(id);
    } catch (error) {
      this.slots.delete(id);
      await lock.release();
      throw error;
    }
    this.emit({ type: "heartbeat.added", at: this.iso(), id, summary: { ...slot.summary } });
    this.enqueueIfDue(slot);
    return { ...slot.summary };
  }

  private readonly onFirstPersist = new Map<string, (file: StateFile) => void>();

  async wake(id: string): Promise<ControlResult> {
    const slot = this.require(id);
    if (slot.live) {
      slot.wakePending = true;
      if (slot.live.actor.getSnapshot().value === "sleeping") {
        slot.wakePending = false;
        slot.live.wake();
      }
      return this.result(slot, `Heartbeat ${id} will tick now.`);
    }
    if (slot.summary.status === "sleeping") {
      slot.wakePending = true;
      this.queueSlot(slot);
      return this.result(slot, `Woke heartbeat ${id}: its next tick starts now.`);
    }
    if (slot.summary.status === "queued") {
      return this.result(slot, `Heartbeat ${id} is already waiting for a tick slot.`);
    }
    return this.result(
      slot,
      `Heartbeat ${id} is ${slot.summary.status}: there is nothing to wake.`,
    );
  }

  async stop(id: string, by = "api"): Promise<ControlResult> {
    const slot = this.require(id);
    if (slot.summary.status === "stopped")
      return this.result(slot, `Heartbeat ${id} is already stopped.`);
    if (slot.summary.status === "completed" || slot.summary.status === "failed") {
      return this.result(slot, `Heartbeat ${id} has ended (${slot.summary.status}).`);
    }
    slot.stopping = true;
    // Durable first: a host killed right after still finds it stopped.
    await setStopped(this.options.stateDir, id, { at: this.iso(), by });
    this.unqueue(slot);
    try {
      if (slot.live) {
        slot.live.stop();
        await (slot.ticking ?? slot.live.done.catch(() => {}));
      } else if (slot.ticking) {
        // Being rehydrated: the tick sees `stopping` and stops the actor as soon as it starts.
        await slot.ticking;
      } else if (slot.lock && slot.summary.status !== "unavailable") {
        // Saved as `shutdown` the way a stopped run is: restore, then stop at once.
        const settings = await this.resolveSaved(slot);
        const running = await this.prepare(slot, settings, undefined);
        slot.live = running;
        startHeartbeat(running);
        running.stop();
        await running.done.catch(() => {});
      }
    } catch (error) {
      slot.summary.problem = this.redact(toErrorInfo(error).message);
    } finally {
      slot.live = null;
      slot.stopping = false;
    }
    await slot.lock?.release();
    slot.lock = null;
    this.setStatus(slot, "stopped");
    return this.result(slot, `Heartbeat ${id} stopped; it stays stopped until started again.`);
  }

  async start(id: string): Promise<ControlResult> {
    const slot = this.require(id);
    if (slot.summary.status !== "stopped" && slot.summary.status !== "unavailable") {
      return this.result(slot, `Heartbeat ${id} is not stopped (${slot.summary.status}).`);
    }
    await setStopped(this.options.stateDir, id, null);
    slot.summary.problem = null;
    await this.host(slot);
    return this.result(slot, `Heartbeat ${id} started: it ticks when due.`);
  }

  stats(): HostStats {
    let live = 0;
    for (const slot of this.slots.values()) if (slot.live) live++;
    return { hosted: this.slots.size, live, queued: this.queue.length, running: this.running };
  }

  subscribe(listener: (event: HostEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.scanTimer);
    clearInterval(this.requestTimer);
    clearInterval(this.leaseTimer);
    this.queue.length = 0;
    const live = [...this.slots.values()].filter((s) => s.live);
    for (const slot of live) slot.live?.stop();
    await Promise.all(live.map((s) => s.live?.done.catch(() => {})));
    // Pending notifications get their bounded wait before the locks go.
    await this.wiring.close();
    const slots = [...this.slots.values()];
    for (let i = 0; i < slots.length; i += 256) {
      await Promise.all(slots.slice(i, i + 256).map((s) => s.lock?.release()));
    }
    await this.leaseRelease();
    this.listeners.clear();
  }

  // ---- hosting ------------------------------------------------------------

  private newStore(id: string): HostedStore {
    return new HostedStore(heartbeatPaths(this.options.stateDir, id), {
      redact: this.redact,
    });
  }

  private newSlot(id: string, store: HostedStore, workdir: string, goal: string): Slot {
    return {
      id,
      store,
      lock: null,
      workdir,
      dueMs: Number.POSITIVE_INFINITY,
      live: null,
      wakePending: false,
      stopping: false,
      lockRetryAt: 0,
      seq: -1,
      wrote: false,
      settings: null,
      ticking: null,
      summary: {
        id,
        goal: clip(goal, 200),
        status: "sleeping",
        state: "idle",
        tick: 0,
        nextTickAt: null,
        usage: { promptTokens: 0, completionTokens: 0, totalTokens: 0, calls: 0 },
        lastOutcome: null,
        reason: null,
        pendingApprovals: 0,
        workdir,
        updatedAt: null,
        problem: null,
      },
    };
  }

  /** Every heartbeat of the state dir with a state file. */
  private async adoptAll(): Promise<void> {
    const names = await fs.readdir(this.options.stateDir).catch(() => [] as string[]);
    await removeStaleTempFiles(this.options.stateDir, names);
    const ids = names
      .map((n) => /^heartbeat-(.+)\.json$/.exec(n)?.[1])
      .filter((id): id is string => !!id && ID_PATTERN.test(id));
    for (let i = 0; i < ids.length; i += 64) {
      await Promise.all(ids.slice(i, i + 64).map((id) => this.adopt(id)));
    }
  }

  /** Reads one heartbeat's state file and hosting record, and hosts it unless it is stopped or ended. */
  private async adopt(id: string): Promise<Slot> {
    const record = await readHostRecord(this.options.stateDir, id);
    const workdir = record?.workdir ?? this.options.workdir;
    const store = this.newStore(id);
    const slot = this.newSlot(id, store, workdir, "");
    this.slots.set(id, slot);
    let file: StateFile | null = null;
    try {
      file = await loadStateFile(store.paths.stateFile);
    } catch (error) {
      this.setProblem(slot, toErrorInfo(error).message);
      return slot;
    }
    if (!file) {
      this.setProblem(slot, "no state file");
      return slot;
    }
    this.applyFile(slot, file);
    if (record?.stopped) {
      slot.summary.status = "stopped";
      slot.summary.reason = "stopped";
    } else if (file.status !== "completed" && file.status !== "failed") {
      await this.host(slot, file);
    }
    this.emit({ type: "heartbeat.added", at: this.iso(), id, summary: { ...slot.summary } });
    return slot;
  }

  /** Takes the lock (hosted: it names the lease) and queues the tick when due. */
  private async host(slot: Slot, loaded?: StateFile): Promise<void> {
    try {
      slot.lock = await slot.store.acquireLock({ lease: this.lease });
      // A `run` may have changed its saved settings (and the file) while it was not hosted.
      slot.settings = null;
      slot.wrote = false;
    } catch (error) {
      this.setProblem(slot, toErrorInfo(error).message);
      slot.lockRetryAt = this.now() + LOCKED_RETRY_MS;
      return;
    }
    slot.lockRetryAt = 0;
    slot.summary.problem = null;
    // Read again once the lock is ours (another process may have written it meanwhile), unless just read.
    const file = loaded ?? (await loadStateFile(slot.store.paths.stateFile).catch(() => null));
    if (file) this.applyFile(slot, file);
    if (file && (file.status === "shutdown" || file.status === "executing")) {
      // Resumed (shutdown) or restored mid-tick: it goes on now, as `run --id` would.
      slot.dueMs = Math.min(slot.dueMs, this.now());
    }
    this.setStatus(slot, "sleeping");
    this.enqueueIfDue(slot);
  }

  /** Copies what the overview shows from a state file. */
  private applyFile(slot: Slot, file: StateFile): void {
    const s = slot.summary;
    s.goal = clip(file.goal, 200);
    s.tick = file.tick;
    s.nextTickAt = file.nextTickAt;
    s.usage = { ...file.usage };
    s.reason = file.reason;
    s.updatedAt = file.updatedAt;
    s.state = stateText(file.snapshot.value);
    const last = file.snapshot.context.digests?.at(-1) as { status?: string } | undefined;
    if (last?.status) s.lastOutcome = last.status;
    slot.dueMs = file.nextTickAt ? Date.parse(file.nextTickAt) : Number.POSITIVE_INFINITY;
    slot.seq = Math.max(slot.seq, file.seq);
    if (file.status === "completed" || file.status === "failed") s.status = file.status;
  }

  private setStatus(slot: Slot, status: HostedStatus): void {
    if (slot.summary.status === status) return;
    slot.summary.status = status;
    this.emit({ type: "state", at: this.iso(), id: slot.id, summary: { ...slot.summary } });
  }

  private setProblem(slot: Slot, problem: string): void {
    slot.summary.problem = this.redact(problem);
    this.setStatus(slot, "unavailable");
  }

  // ---- the due queue --------------------------------------------------------

  private enqueueIfDue(slot: Slot): void {
    if (slot.summary.status === "sleeping" && slot.lock && slot.dueMs <= this.now()) {
      this.queueSlot(slot);
    }
    this.pump();
  }

  private queueSlot(slot: Slot): void {
    if (slot.summary.status !== "sleeping" || !slot.lock || slot.live) return;
    this.queue.push(slot);
    this.setStatus(slot, "queued");
    this.pump();
  }

  private unqueue(slot: Slot): void {
    const at = this.queue.indexOf(slot);
    if (at >= 0) this.queue.splice(at, 1);
  }

  /** Finds due heartbeats (and locked ones to try again); cheap: one pass over numbers. */
  private scan(): void {
    if (this.closed) return;
    const now = this.now();
    for (const slot of this.slots.values()) {
      if (slot.dueMs <= now && slot.summary.status === "sleeping" && slot.lock && !slot.live) {
        this.queue.push(slot);
        this.setStatus(slot, "queued");
      } else if (slot.lockRetryAt > 0 && slot.lockRetryAt <= now) {
        slot.lockRetryAt = 0;
        void this.host(slot);
      }
    }
    this.pump();
  }

  /** Starts queued ticks while slots are free, oldest due first. */
  private pump(): void {
    while (!this.closed && this.running < this.max && this.queue.length > 0) {
      const slot = this.queue.shift() as Slot;
      if (slot.summary.status !== "queued" || slot.live) continue;
      this.running++;
      this.setStatus(slot, "ticking");
      slot.ticking = this.tick(slot).finally(() => {
        slot.ticking = null;
        this.running--;
        this.pump();
      });
    }
  }

  /** Rehydrates the actor, lets it tick until it sleeps again (or ends), then drops it. */
  private async tick(slot: Slot): Promise<void> {
    try {
      const settings = await this.resolveSaved(slot);
      // Only a file this host wrote last (seq known since its last persist) is skipped.
      slot.store.skipSeq = slot.wrote ? slot.seq : null;
      const running = await this.prepare(slot, settings, undefined);
      if (this.closed) return;
      slot.live = running;
      const dropped = new Promise<void>((resolve) => {
        this.onSleep.set(slot.id, resolve);
      });
      startHeartbeat(running);
      const snapshot = running.actor.getSnapshot();
      if (snapshot.status === "error") throw snapshot.error;
      if (slot.stopping) running.stop();
      const outcome = await Promise.race([
        running.done.then((output) => ({ output })),
        dropped.then(() => null),
      ]);
      if (outcome === null && !slot.stopping) {
        // Asleep with its next tick ahead: the state file holds all of it.
        running.actor.stop();
        slot.live = null;
        slot.summary.state = "sleeping";
        this.setStatus(slot, "sleeping");
        return;
      }
      const output = outcome ? outcome.output : await running.done;
      slot.live = null;
      const status = output.status;
      if (status === "completed" || status === "failed") {
        this.setStatus(slot, status);
        await slot.lock?.release();
        slot.lock = null;
      }
    } catch (error) {
      slot.live = null;
      this.setProblem(slot, toErrorInfo(error).message);
      await slot.lock?.release();
      slot.lock = null;
    } finally {
      this.onSleep.delete(slot.id);
    }
  }

  private readonly onSleep = new Map<string, () => void>();

  /** The actor for a slot, wired to the host's events (the rest is the shared wiring). */
  private prepare(
    slot: Slot,
    settings: RunSettings,
    goal: string | undefined,
  ): Promise<RunningHeartbeat> {
    return this.wiring.prepare({
      id: slot.id,
      store: slot.store,
      workdir: slot.workdir,
      settings,
      goal,
      onProblem: (message) => this.setProblem(slot, message),
      events: {
        approvalNeeded: (pending) => {
          slot.summary.pendingApprovals = pending.length;
          for (const call of pending) {
            this.emit({
              type: "approval",
              at: this.iso(),
              id: slot.id,
              callId: call.callId,
              decision: "pending",
            });
          }
        },
        approvalDecided: (decision) => {
          slot.summary.pendingApprovals = Math.max(0, slot.summary.pendingApprovals - 1);
          this.emit({
            type: "approval",
            at: this.iso(),
            id: slot.id,
            callId: decision.callId,
            decision: decision.decision,
          });
        },
        state: (state, context) => this.onState(slot, state, context),
        toolLoopState: (path) => {
          // Only while the heartbeat is in `executing` (a late report of a finished loop is dropped).
          if (slot.summary.state !== "executing" && !slot.summary.state.startsWith("executing."))
            return;
          slot.summary.state = path;
          this.emit({ type: "state", at: this.iso(), id: slot.id, summary: { ...slot.summary } });
        },
        persisted: (file, entries) => this.onPersisted(slot, file, entries),
        tool: (record, tick) =>
          this.emit({
            type: "tool",
            at: this.iso(),
            id: slot.id,
            tick,
            call: { callId: record.callId, name: record.name, status: record.status },
          }),
      },
    });
  }

  private onState(slot: Slot, state: string, context: HeartbeatContext): void {
    slot.summary.state = state;
    slot.summary.tick = context.tick;
    this.emit({ type: "state", at: this.iso(), id: slot.id, summary: { ...slot.summary } });
    if (state !== "sleeping") return;
    if (slot.wakePending) {
      slot.wakePending = false;
      queueMicrotask(() => slot.live?.wake());
      return;
    }
    const due = context.nextTickAt ? Date.parse(context.nextTickAt) : Number.POSITIVE_INFINITY;
    // Restored in `persisting` with the tick due, it passes `sleeping` on its way to the tick.
    if (due > this.now()) this.onSleep.get(slot.id)?.();
  }

  private onPersisted(slot: Slot, file: StateFile, entries: JournalEntry[]): void {
    const repeated = file.seq <= slot.seq;
    this.applyFile(slot, file);
    slot.wrote = true;
    const tick = entries.find((e) => e.type === "tick") as { status?: string } | undefined;
    if (tick?.status) slot.summary.lastOutcome = tick.status;
    this.onFirstPersist.get(slot.id)?.(file);
    if (repeated) return;
    this.emit({
      type: "tick",
      at: this.iso(),
      id: slot.id,
      summary: { ...slot.summary },
      entries: entries as Record<string, unknown>[],
    });
  }

  // ---- settings ------------------------------------------------------------

  /** Resolves run settings as `run` does: the given values as flags, then env, toml-less, user config, defaults. */
  private resolve(flags: Record<string, unknown>): Promise<RunSettings> {
    return this.wiring.resolve(flags);
  }

  /** A hosted heartbeat's settings: the ones saved in its state file (the API key is the host's). */
  private async resolveSaved(slot: Slot): Promise<RunSettings> {
    if (slot.settings) return slot.settings;
    const file = await loadStateFile(slot.store.paths.stateFile);
    if (!file) throw new Error(`The state file of ${slot.id} is gone.`);
    slot.settings = await this.wiring.resolveSaved(slot.id, file.settings);
    return slot.settings;
  }

  // ---- control requests from other terminals ------------------------------

  private polling = false;

  /** Picks up `requests/<action>.<id>` files (ravenclaws stop/wake/start from another terminal). */
  private async pollRequests(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    try {
      for (const request of await readRequests(this.options.stateDir)) {
        await fs.rm(request.file, { force: true });
        let slot = this.slots.get(request.id);
        if (!slot && request.action === "start") slot = await this.adopt(request.id);
        if (!slot) continue;
        if (request.action === "stop") await this.stop(request.id, "cli").catch(() => {});
        if (request.action === "wake") await this.wake(request.id).catch(() => {});
        if (request.action === "start") await this.start(request.id).catch(() => {});
      }
    } finally {
      this.polling = false;
    }
  }

  // ---- helpers ---------------------------------------------------------------

  private require(id: string): Slot {
    const slot = this.slots.get(id);
    if (!slot) {
      throw new CommandFailedError("not-found", `No heartbeat "${id}" is hosted here.`, {
        hint: "List them with GET /api/heartbeats or `ravenclaws status`.",
      });
    }
    return slot;
  }

  private checkOpen(): void {
    if (this.closed) throw new UsageError("The host is closing.", { code: "host-closed" });
  }

  private result(slot: Slot, message: string): ControlResult {
    return { message, summary: { ...slot.summary } };
  }

  private emit(event: HostEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}

/** Setting values as the command line gives them (numbers as text), so they are checked like flags. */
function asFlags(values: Record<string, unknown>): Record<string, unknown> {
  const flags: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    flags[key] = typeof value === "number" ? String(value) : value;
  }
  return flags;
}

/** This host's name, for request records. */
export const hostName = () => os.hostname();
