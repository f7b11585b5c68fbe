/**
 * The conformance suite of the {@link HeartbeatStore} interface: what every
 * backend (the files of a state dir, PostgreSQL next) must do, run against a
 * real instance of it. A backend's test file calls
 * {@link describeStoreConformance} with a factory that makes a fresh, empty
 * backend per test.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LockCompromisedError, LockedError, StateFileError } from "../../../src/errors.js";
import { type StateFile, StateFileSchema } from "../../../src/schemas/stateFile.js";
import type {
  HeartbeatStore,
  HeartbeatStoreBackend,
  JournalEntry,
} from "../../../src/services/store/index.js";

/** A fresh backend under test, and what the suite may do to it behind its back. */
export interface ConformanceSubject {
  /** An empty backend. */
  backend: HeartbeatStoreBackend;
  /**
   * Leaves heartbeat `id`'s snapshot torn, as a crash in the middle of a
   * write would on this backend. Omitted by backends whose writes cannot
   * tear (a database transaction): the recover tests are skipped for them.
   */
  tearSnapshot?: (id: string) => Promise<void>;
  /** Leaves a torn last record in heartbeat `id`'s journal; omitted where that cannot happen. */
  tearJournal?: (id: string) => Promise<void>;
  /** Frees everything the backend holds (files, connections). */
  close(): Promise<void>;
}

const FIXTURE = fileURLToPath(new URL("../../fixtures/state-v3.json", import.meta.url));
const fixture = StateFileSchema.parse(JSON.parse(readFileSync(FIXTURE, "utf8")));

/**
 * A valid snapshot of heartbeat `id` at `seq` and `tick`; `note` ends up in
 * its progress, to tell two writes of the same `seq` apart.
 */
export function snapshotOf(id: string, seq: number, tick = seq, note = ""): StateFile {
  const state = structuredClone(fixture);
  const progress = `progress of ${id} at seq ${seq}${note ? ` (${note})` : ""}`;
  state.id = id;
  state.seq = seq;
  state.tick = tick;
  state.progress = progress;
  const ctx = state.snapshot.context as Record<string, unknown>;
  ctx.id = id;
  ctx.seq = seq;
  ctx.tick = tick;
  ctx.progress = progress;
  return state;
}

const tick = (seq: number, extra: Record<string, unknown> = {}): JournalEntry => ({
  type: "tick",
  seq,
  tick: seq,
  ...extra,
});

/** Registers the suite for one backend. */
export function describeStoreConformance(
  name: string,
  factory: () => Promise<ConformanceSubject>,
): void {
  describe(`HeartbeatStore conformance: ${name}`, () => {
    let subject: ConformanceSubject;
    let backend: HeartbeatStoreBackend;

    beforeEach(async () => {
      subject = await factory();
      backend = subject.backend;
    });

    afterEach(async () => {
      await subject.close();
    });

    /** A store as a freshly started process gets it: made usable, snapshot loaded. */
    async function opened(id: string): Promise<HeartbeatStore> {
      const store = backend.heartbeat(id);
      await store.ensureDir();
      await store.load();
      return store;
    }

    it("starts empty: no heartbeats, no snapshot, no journal", async () => {
      expect(await backend.list()).toEqual([]);
      const store = backend.heartbeat("nobody");
      await store.ensureDir();
      expect(await store.load()).toBeNull();
      expect(await store.peek()).toBeNull();
      expect(await store.readJournal()).toEqual([]);
    });

    it("round-trips a snapshot: what is saved is what another store of the same heartbeat loads", async () => {
      const writer = await opened("alpha");
      const first = snapshotOf("alpha", 1);
      await writer.save(first);
      expect(await backend.heartbeat("alpha").load()).toEqual(first);
      const second = snapshotOf("alpha", 2);
      await writer.save(second);
      expect(await backend.heartbeat("alpha").load()).toEqual(second);
      expect(await backend.heartbeat("alpha").peek()).toEqual(second);
    });

    it("lists the heartbeats it holds, sorted", async () => {
      await (await opened("b-two")).save(snapshotOf("b-two", 1));
      await (await opened("a-one")).save(snapshotOf("a-one", 1));
      expect(await backend.list()).toEqual(["a-one", "b-two"]);
    });

    it("writing the same seq again is allowed (a checkpoint, a repeated persist)", async () => {
      const store = await opened("same");
      await store.save(snapshotOf("same", 1));
      await store.save(snapshotOf("same", 1, 1, "checkpoint"));
      expect((await store.peek())?.progress).toBe("progress of same at seq 1 (checkpoint)");
    });

    it("refuses a stale writer: a store that loaded seq 1 cannot write after another wrote seq 2", async () => {
      const setup = await opened("fenced");
      await setup.save(snapshotOf("fenced", 1));
      const a = await opened("fenced");
      const b = await opened("fenced");
      await a.save(snapshotOf("fenced", 2, 2, "by a"));
      await expect(b.save(snapshotOf("fenced", 2, 2, "by b"))).rejects.toBeInstanceOf(
        LockCompromisedError,
      );
      // Refused for good, whatever it writes next; the newer snapshot is untouched.
      await expect(b.save(snapshotOf("fenced", 3, 3, "by b"))).rejects.toBeInstanceOf(
        LockCompromisedError,
      );
      await expect(
        b.commit(snapshotOf("fenced", 4, 4, "by b"), [tick(4, { by: "b" })]),
      ).rejects.toBeInstanceOf(LockCompromisedError);
      expect((await backend.heartbeat("fenced").peek())?.progress).toBe(
        "progress of fenced at seq 2 (by a)",
      );
      expect((await backend.heartbeat("fenced").readJournal()).filter((e) => e.by === "b")).toEqual(
        [],
      );
      // The writer that is current goes on.
      await a.save(snapshotOf("fenced", 3, 3, "by a"));
      expect((await a.peek())?.seq).toBe(3);
    });

    it("refuses a writer that never loaded to overwrite a newer snapshot", async () => {
      const current = await opened("late");
      await current.save(snapshotOf("late", 5));
      const blind = backend.heartbeat("late");
      await blind.ensureDir();
      await expect(blind.save(snapshotOf("late", 3))).rejects.toBeInstanceOf(LockCompromisedError);
      expect((await current.peek())?.seq).toBe(5);
    });

    it("reads the journal back in the order it was appended", async () => {
      const store = await opened("journal");
      const entries: JournalEntry[] = [
        { type: "run", at: "2026-01-01T00:00:00.000Z", resumed: false },
        { type: "tool-intent", tick: 1, callId: "c1" },
        { type: "tool", tick: 1, callId: "c1", status: "ok" },
        tick(1),
      ];
      await store.append(entries.slice(0, 2));
      await store.append(entries.slice(2, 3));
      await store.commit(snapshotOf("journal", 1), entries.slice(3));
      await store.append([{ type: "tool-intent", tick: 2, callId: "c2" }]);
      const read = await backend.heartbeat("journal").readJournal();
      expect(read).toEqual([...entries, { type: "tool-intent", tick: 2, callId: "c2" }]);
    });

    it("journals a tick at most once: a persist repeated, even by a new store after a restart", async () => {
      const store = await opened("once");
      await store.commit(snapshotOf("once", 1), [tick(1)]);
      await store.commit(snapshotOf("once", 2), [tick(2), { type: "end", seq: 2, status: "x" }]);
      // The same persist again (restored from its snapshot): nothing more journaled.
      await store.commit(snapshotOf("once", 2), [tick(2), { type: "end", seq: 2, status: "x" }]);
      const restarted = await opened("once");
      await restarted.commit(snapshotOf("once", 2), [tick(2)]);
      await restarted.append([tick(1)]);
      // Records without a seq are always appended.
      await restarted.append([{ type: "run", resumed: true }]);
      await restarted.commit(snapshotOf("once", 3), [tick(3)]);
      const read = await store.readJournal();
      expect(read.map((e) => `${e.type}:${e.seq ?? "-"}`)).toEqual([
        "tick:1",
        "tick:2",
        "end:2",
        "run:-",
        "tick:3",
      ]);
    });

    it("commit saves the snapshot and journals its entries", async () => {
      const store = await opened("commit");
      await store.commit(snapshotOf("commit", 1), [tick(1), { type: "skip", seq: 1 }]);
      expect((await backend.heartbeat("commit").load())?.seq).toBe(1);
      expect(await store.readJournal()).toEqual([tick(1), { type: "skip", seq: 1 }]);
    });

    it("recover leaves a healthy snapshot alone, and says when there is none", async () => {
      const empty = await opened("none");
      expect(await empty.recover()).toMatchObject({ action: "none", reason: "no-state" });
      const store = await opened("healthy");
      await store.save(snapshotOf("healthy", 1, 1));
      await store.save(snapshotOf("healthy", 2, 2));
      expect(await store.recover()).toMatchObject({ action: "none", reason: "healthy", tick: 2 });
      expect((await backend.heartbeat("healthy").load())?.seq).toBe(2);
    });

    it("a torn snapshot is refused, never overwritten, and recover goes back to the previous version", async (context) => {
      if (!subject.tearSnapshot) return context.skip();
      const store = await opened("torn");
      await store.save(snapshotOf("torn", 1, 1));
      await store.save(snapshotOf("torn", 2, 2));
      await subject.tearSnapshot("torn");
      const reader = backend.heartbeat("torn");
      await expect(reader.load()).rejects.toBeInstanceOf(StateFileError);
      const result = await reader.recover();
      expect(result).toMatchObject({ action: "restored", tick: 1 });
      expect(await backend.heartbeat("torn").load()).toEqual(snapshotOf("torn", 1, 1));
      // The journal notes the recovery, and journals the lost tick again when it is redone.
      await reader.commit(snapshotOf("torn", 2, 2, "again"), [tick(2, { again: true })]);
      const journal = await reader.readJournal();
      expect(journal.find((e) => e.type === "recover")).toMatchObject({ seq: 1, tick: 1 });
      expect(journal.at(-1)).toEqual(tick(2, { again: true }));
    });

    it("a torn last journal record is skipped, and the next append starts after it", async (context) => {
      if (!subject.tearJournal) return context.skip();
      const store = await opened("tornlog");
      await store.commit(snapshotOf("tornlog", 1), [tick(1)]);
      await subject.tearJournal("tornlog");
      expect(await backend.heartbeat("tornlog").readJournal()).toEqual([tick(1)]);
      const restarted = await opened("tornlog");
      await restarted.commit(snapshotOf("tornlog", 2), [tick(2)]);
      expect(await backend.heartbeat("tornlog").readJournal()).toEqual([tick(1), tick(2)]);
    });

    it("one lock holder at a time: a second is refused naming the holder, and takes it once released", async () => {
      const first = await opened("locked");
      const second = await opened("locked");
      const lock = await first.acquireLock();
      expect(lock.holder.pid).toBe(process.pid);
      expect(lock.compromised).toBeNull();
      const refused = await second.acquireLock().then(
        () => null,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(LockedError);
      expect((refused as LockedError).holder?.pid).toBe(process.pid);
      await lock.verify();
      await lock.release();
      const taken = await second.acquireLock();
      expect(taken.token).not.toBe(lock.token);
      await taken.verify();
      await taken.release();
    });

    it("serialises writes: a later save is never overtaken by an earlier one", async () => {
      const store = await opened("queue");
      const writes = [1, 2, 3, 4, 5].map((seq) => store.save(snapshotOf("queue", seq)));
      await Promise.all(writes);
      expect((await backend.heartbeat("queue").load())?.seq).toBe(5);
    });
  });
}
