/**
 * The store of heartbeats: the {@link HeartbeatStore} interface and the
 * stores that implement it (files; PostgreSQL, whose `pg` loads only when a
 * database is opened), with the file store's parts (state file, atomic writes,
 * journal, lock, retries). Import the store from here.
 */
export { NotRegularFileError, openRegularFile, readRegularFile } from "../regularFile.js";
export {
  type AtomicWriteOptions,
  type FileIdentity,
  type StoreFs,
  writeFileAtomic,
} from "./atomicWrite.js";
export {
  FileHeartbeatStore,
  fileStoreBackend,
  type HeartbeatStoreOptions,
  removeStaleTempFiles,
} from "./fileStore.js";
export { parseJournal } from "./journal.js";
export {
  acquireLock,
  HOST_LEASE_FILE,
  LOCK_REFRESH_MS,
  LOCK_STALE_MS,
  type LockOptions,
  leaseMtimeOf,
  lockNotAFile,
} from "./lock.js";
export {
  type PgCreateOptions,
  PgHeartbeatStore,
  type PgHeartbeatSummary,
  type PgLockOptions,
  type PgStoreBackend,
  type PgStoreOptions,
  pgHeartbeatPaths,
  pgStoreBackend,
} from "./pgStore.js";
export {
  checkStateFile,
  heartbeatPaths,
  loadStateFile,
  parseStateFile,
  prevPathOf,
} from "./stateFile.js";
export type {
  AcquireLockOptions,
  HeartbeatLock,
  HeartbeatPaths,
  HeartbeatStore,
  HeartbeatStoreBackend,
  JournalEntry,
  RecoverResult,
} from "./types.js";
