import type { MessagePort } from "node:worker_threads";
import { receiveMessageOnPort } from "node:worker_threads";

/**
 * Control words two threads share when one of them (analyze, which runs synchronously) never
 * returns to its event loop: it takes messages off its port with `receiveMessageOnPort` and
 * sleeps on these words with `Atomics.wait` instead of waiting for events.
 */
export type Control = Int32Array;

/** Bumped after every message posted to the side that blocks. */
const POSTED = 0;
/** Batches posted and not yet consumed (a channel's batches flow one way). */
const IN_FLIGHT = 1;
/** Set when the consuming side failed: a producer waiting for room stops waiting. */
const FAILED = 2;

export function newControl(): Control {
  return new Int32Array(new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT));
}

/** After posting to the blocking side: wake it. */
export function signalPosted(control: Control): void {
  Atomics.add(control, POSTED, 1);
  Atomics.notify(control, POSTED);
}

/**
 * The next message on `port`, sleeping until the other side posts one (`signalPosted`). Throws
 * when nothing comes for `stallMs`: the other thread is gone.
 */
export function receiveBlocking(
  port: MessagePort,
  control: Control,
  stallMs: number,
  who: string,
): unknown {
  for (;;) {
    const posted = Atomics.load(control, POSTED);
    const received = receiveMessageOnPort(port);
    if (received !== undefined) return received.message;
    if (Atomics.wait(control, POSTED, posted, stallMs) === "timed-out") {
      throw new Error(`${who} sent nothing for ${stallMs / 1000}s`);
    }
  }
}

/** The next message on `port` if one is there, without waiting. */
export function receiveNow(port: MessagePort): unknown {
  return receiveMessageOnPort(port)?.message;
}

/** Count a batch posted to the consumer. */
export function countPosted(control: Control): void {
  Atomics.add(control, IN_FLIGHT, 1);
}

/** The consumer took a batch: room for the next. */
export function countConsumed(control: Control): void {
  Atomics.sub(control, IN_FLIGHT, 1);
  Atomics.notify(control, IN_FLIGHT);
}

/** The consumer failed: a producer waiting for room stops waiting. */
export function markFailed(control: Control): void {
  Atomics.store(control, FAILED, 1);
  Atomics.notify(control, IN_FLIGHT);
}

export function failed(control: Control): boolean {
  return Atomics.load(control, FAILED) !== 0;
}

/** Sleep while `max` or more batches are in flight (bounded memory), unless the consumer failed. */
export function waitForRoom(control: Control, max: number): void {
  for (let n = Atomics.load(control, IN_FLIGHT); n >= max && !failed(control); ) {
    Atomics.wait(control, IN_FLIGHT, n, 1000);
    n = Atomics.load(control, IN_FLIGHT);
  }
}
