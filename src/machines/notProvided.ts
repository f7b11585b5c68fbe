/**
 * The placeholder actor of the statecharts, in its own module because it
 * needs xstate (src/machines/shared.ts has no runtime imports).
 */
import { fromPromise } from "xstate";

/** Placeholder for an actor the runtime (or a test) must provide. */
export function notProvided<TOutput, TInput>(name: string) {
  return fromPromise<TOutput, TInput>(async () => {
    throw new Error(`actor "${name}" was not provided: supply it with machine.provide()`);
  });
}
