/**
 * @deprecated Import from `./store/index.js`: the store is split by job under
 * src/services/store/. This re-export stays only while code written against
 * the old path is being landed; new code must not use it.
 */
export * from "./store/index.js";
