import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker } from "node:worker_threads";
import type { Db } from "../store/index.js";
import { listInterfaces } from "../store/index.js";
import type { Control } from "../util/thread-channel.js";
import {
  countConsumed,
  countPosted,
  newControl,
  receiveBlocking,
  signalPosted,
  waitForRoom,
} from "../util/thread-channel.js";
import type { LegView, TranslationView } from "./types.js";

/**
 * Legs and translations merged in time order, as reconstruction reads them: millions of rows.
 *
 * Reading them is a third of analyze's work (SQLite's row extraction, a string per text column
 * per row), so when analyze runs on a file it happens in a worker thread on the other core. Rows
 * cross as numbers in transferred Float64Arrays, and text as codes into a dictionary that grows
 * as new values appear: addresses, nodes, interfaces and Zeek states repeat, so the main thread
 * holds each once instead of allocating it per row. The same encoder runs in-process when there
 * is no worker (an in-memory database, or tests running the TypeScript sources).
 */

export const LEG = 0;
export const TRANSLATION = 1;

/** Numbers per record; legs use all, translations the first 15. */
const SLOTS = 17;
const BATCH = 4096;
/** Past this many distinct strings the dictionary starts afresh (bounded memory). */
const MAX_DICTIONARY = 1 << 20;
/** Batches the reader may run ahead of reconstruction (bounded memory). */
const MAX_IN_FLIGHT = 4;

export interface EventBatch {
  count: number;
  kinds: Uint8Array;
  nums: Float64Array;
  /** Strings first used in this batch; their codes follow the dictionary's current end. */
  strings: string[];
  /** The dictionary was cleared before this batch's strings. */
  reset: boolean;
}

/**
 * Reads legs and translations in time order (a translation first on a tie) into batches.
 * `batch` and `maxDictionary` are for tests of batch boundaries and the dictionary's reset.
 */
export function* encodeEvents(
  db: Db,
  {
    batch: size = BATCH,
    maxDictionary = MAX_DICTIONARY,
  }: { batch?: number; maxDictionary?: number } = {},
): Generator<EventBatch> {
  const ifaceNames = new Map<number, Map<number, string | null>>();
  for (const i of listInterfaces(db)) {
    let byIdx = ifaceNames.get(i.captureId);
    if (byIdx === undefined) ifaceNames.set(i.captureId, (byIdx = new Map()));
    byIdx.set(i.idx, i.name);
  }
  const legs = db
    .prepare(
      `SELECT id, capture_id, node, interface_id, proto, orig_ip, orig_port, resp_ip, resp_port,
              first_ts, last_ts, orig_packets, resp_packets, conn_state, history, direction,
              icmp_errors
       FROM legs ORDER BY first_ts, id`,
    )
    .raw()
    .iterate() as IterableIterator<unknown[]>;
  const translations = db
    .prepare(
      `SELECT id, capture_id, node, proto, pre_src_ip, pre_src_port, pre_dst_ip, pre_dst_port,
              post_src_ip, post_src_port, post_dst_ip, post_dst_port, first_ts, last_ts, packets
       FROM translations ORDER BY first_ts, id`,
    )
    .raw()
    .iterate() as IterableIterator<unknown[]>;

  const dictionary = new Map<string, number>();
  let fresh: string[] = [];
  const code = (s: string | null): number => {
    if (s === null) return -1;
    let c = dictionary.get(s);
    if (c === undefined) {
      c = dictionary.size;
      dictionary.set(s, c);
      fresh.push(s);
    }
    return c;
  };
  const nodeCode = (node: unknown, captureId: number) =>
    code((node as string | null) ?? `capture-${captureId}`);

  let kinds = new Uint8Array(size);
  let nums = new Float64Array(size * SLOTS);
  let count = 0;
  let reset = false;
  const take = (): EventBatch => {
    const batch = { count, kinds, nums, strings: fresh, reset };
    kinds = new Uint8Array(size);
    nums = new Float64Array(size * SLOTS);
    count = 0;
    fresh = [];
    reset = false;
    if (dictionary.size > maxDictionary) {
      dictionary.clear();
      reset = true;
    }
    return batch;
  };

  let leg = legs.next();
  let tr = translations.next();
  while (!leg.done || !tr.done) {
    const o = count * SLOTS;
    if (tr.done || (!leg.done && (leg.value[9] as number) < (tr.value[12] as number))) {
      const r = leg.value;
      const captureId = r[1] as number;
      const icmp = r[16] as string | null;
      kinds[count] = LEG;
      nums[o] = r[0] as number;
      nums[o + 1] = captureId;
      nums[o + 2] = nodeCode(r[2], captureId);
      nums[o + 3] = code(ifaceNames.get(captureId)?.get(r[3] as number) ?? null);
      nums[o + 4] = r[4] as number;
      nums[o + 5] = code(r[5] as string);
      nums[o + 6] = r[6] as number;
      nums[o + 7] = code(r[7] as string);
      nums[o + 8] = r[8] as number;
      nums[o + 9] = r[9] as number;
      nums[o + 10] = r[10] as number;
      nums[o + 11] = r[11] as number;
      nums[o + 12] = r[12] as number;
      nums[o + 13] = code(r[13] as string);
      nums[o + 14] = code(r[14] as string);
      nums[o + 15] = code(r[15] as string);
      nums[o + 16] = icmp === null || icmp === "{}" ? -1 : code(icmp);
      leg = legs.next();
    } else {
      const r = tr.value;
      const captureId = r[1] as number;
      kinds[count] = TRANSLATION;
      nums[o] = r[0] as number;
      nums[o + 1] = captureId;
      nums[o + 2] = nodeCode(r[2], captureId);
      nums[o + 3] = r[3] as number;
      nums[o + 4] = code(r[4] as string);
      nums[o + 5] = r[5] as number;
      nums[o + 6] = code(r[6] as string);
      nums[o + 7] = r[7] as number;
      nums[o + 8] = code(r[8] as string);
      nums[o + 9] = r[9] as number;
      nums[o + 10] = code(r[10] as string);
      nums[o + 11] = r[11] as number;
      nums[o + 12] = r[12] as number;
      nums[o + 13] = r[13] as number;
      nums[o + 14] = r[14] as number;
      tr = translations.next();
    }
    if (++count === size) yield take();
  }
  if (count > 0) yield take();
}

const NO_ICMP: Record<string, number> = Object.freeze({}) as Record<string, number>;

/** Turns batches back into legs and translations; strings come from the shared dictionary. */
export function* decodeEvents(batches: Iterable<EventBatch>): Generator<LegView | TranslationView> {
  let dictionary: string[] = [];
  // ICMP error maps repeat as much as their text: parsed once per dictionary entry, shared.
  let icmp: (Record<string, number> | undefined)[] = [];
  const text = (c: number): string => dictionary[c] ?? "";
  for (const b of batches) {
    if (b.reset) {
      dictionary = [];
      icmp = [];
    }
    for (const s of b.strings) dictionary.push(s);
    const nums = b.nums;
    for (let i = 0; i < b.count; i++) {
      const o = i * SLOTS;
      if (b.kinds[i] === LEG) {
        const iface = nums[o + 3] as number;
        const icmpCode = nums[o + 16] as number;
        let errors = NO_ICMP;
        if (icmpCode >= 0) {
          errors = icmp[icmpCode] ?? (icmp[icmpCode] = JSON.parse(text(icmpCode)));
        }
        yield {
          kind: "leg",
          id: nums[o] as number,
          node: text(nums[o + 2] as number),
          iface: iface < 0 ? null : text(iface),
          proto: nums[o + 4] as number,
          origIp: text(nums[o + 5] as number),
          origPort: nums[o + 6] as number,
          respIp: text(nums[o + 7] as number),
          respPort: nums[o + 8] as number,
          firstTs: nums[o + 9] as number,
          lastTs: nums[o + 10] as number,
          origPackets: nums[o + 11] as number,
          respPackets: nums[o + 12] as number,
          connState: text(nums[o + 13] as number),
          history: text(nums[o + 14] as number),
          direction: text(nums[o + 15] as number) as LegView["direction"],
          icmpErrors: errors,
        };
      } else {
        const proto = nums[o + 3] as number;
        yield {
          kind: "translation",
          id: nums[o] as number,
          node: text(nums[o + 2] as number),
          pre: {
            proto,
            srcIp: text(nums[o + 4] as number),
            srcPort: nums[o + 5] as number,
            dstIp: text(nums[o + 6] as number),
            dstPort: nums[o + 7] as number,
          },
          post: {
            proto,
            srcIp: text(nums[o + 8] as number),
            srcPort: nums[o + 9] as number,
            dstIp: text(nums[o + 10] as number),
            dstPort: nums[o + 11] as number,
          },
          firstTs: nums[o + 12] as number,
          lastTs: nums[o + 13] as number,
          packets: nums[o + 14] as number,
        };
      }
    }
  }
}

const WORKER = new URL("./events-worker.js", import.meta.url);

/** Can the reader run in a worker thread? Not from the TypeScript sources (tests), nor in memory. */
export function readerThreadAvailable(db: Db): boolean {
  return !db.memory && existsSync(fileURLToPath(WORKER));
}

/**
 * The legs and translations of `db` in time order: read in a worker thread when one is
 * available and `thread` is not false, else in this thread.
 */
export function readEvents(
  db: Db,
  options: { thread?: boolean } = {},
): Iterable<LegView | TranslationView> {
  const thread = options.thread ?? readerThreadAvailable(db);
  return decodeEvents(thread ? batchesFromWorker(db.name) : encodeEvents(db));
}

interface WorkerMessage {
  batch?: EventBatch;
  end?: true;
  error?: string;
}

/** How long to wait for the reader's next batch before deciding it is gone. */
const STALL_MS = 120_000;

/** Batches from a worker running `encodeEvents` on its own read-only connection. */
function* batchesFromWorker(path: string): Generator<EventBatch> {
  const { port1, port2 } = new MessageChannel();
  const control = newControl();
  const worker = new Worker(WORKER, {
    workerData: { path, port: port2, control, maxInFlight: MAX_IN_FLIGHT },
    transferList: [port2],
  });
  worker.unref();
  try {
    for (;;) {
      const message = receiveBlocking(
        port1,
        control,
        STALL_MS,
        "the leg reader thread",
      ) as WorkerMessage;
      if (message.error !== undefined) throw new Error(message.error);
      if (message.end) return;
      if (message.batch === undefined) continue;
      countConsumed(control);
      yield message.batch;
    }
  } finally {
    port1.close();
    void worker.terminate();
  }
}

/** The worker's side of `batchesFromWorker`. */
export function serveEvents(
  db: Db,
  post: (message: WorkerMessage, transfer?: ArrayBuffer[]) => void,
  control: Control,
  maxInFlight: number,
): void {
  try {
    for (const batch of encodeEvents(db)) {
      countPosted(control);
      post({ batch }, [batch.kinds.buffer as ArrayBuffer, batch.nums.buffer as ArrayBuffer]);
      signalPosted(control);
      waitForRoom(control, maxInFlight);
    }
    post({ end: true });
  } catch (error) {
    post({ error: (error as Error).message });
  }
  signalPosted(control);
}
