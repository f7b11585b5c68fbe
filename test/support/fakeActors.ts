/**
 * Fake promise actors for machine tests: they record every call (input and
 * AbortSignal) and answer with a responder, or stay pending until the test
 * settles them by hand.
 */
import { fromPromise } from "xstate";

/** One invocation of a fake promise actor. */
export interface Call<I, O> {
  input: I;
  signal: AbortSignal;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

/** Answers a call; may return {@link pending} to leave it to the test. */
export type Responder<I, O> = (input: I, index: number) => O | Promise<O>;

/** A promise that never settles by itself: the test settles the call through its record. */
export const pending = <T>(): Promise<T> => new Promise<T>(() => {});

/** A fake promise actor that records every call and answers with `respond`. */
export function fake<O, I>(respond: Responder<I, O>) {
  const calls: Call<I, O>[] = [];
  const logic = fromPromise<O, I>(
    ({ input, signal }) =>
      new Promise<O>((resolve, reject) => {
        const index = calls.length;
        calls.push({ input, signal, resolve, reject });
        Promise.resolve()
          .then(() => respond(input, index))
          .then(resolve, reject);
      }),
  );
  return { logic, calls };
}

/** Narrows away null and undefined, failing the test when the value is missing. */
export function must<T>(value: T | null | undefined, what = "value"): T {
  if (value === null || value === undefined) throw new Error(`expected ${what}`);
  return value;
}
