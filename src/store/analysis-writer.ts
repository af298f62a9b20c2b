import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { MessagePort } from "node:worker_threads";
import { MessageChannel, Worker } from "node:worker_threads";
import type { Control } from "../util/thread-channel.js";
import {
  countConsumed,
  countPosted,
  failed,
  markFailed,
  newControl,
  receiveBlocking,
  receiveNow,
  signalPosted,
  waitForRoom,
} from "../util/thread-channel.js";
import type { StoredConnection, StoredFinding } from "./analysis-schema.js";
import type { Db } from "./db.js";
import { RowBatch } from "./writer.js";

/**
 * Writes what `svctrace analyze` finds, replacing the previous results in one transaction: a run
 * that fails leaves the previous results as they were.
 *
 * A million connection rows are a quarter of analyze's work, so on a database file they are
 * written by a worker thread on the other core. Connections cross as numbers in transferred
 * Float64Arrays and their text as codes into a dictionary (addresses, Services, nodes and
 * verdicts repeat); each distinct (path, candidates) pair gets its id here and crosses once.
 * In memory (and from the TypeScript sources, in tests) the same encoding is applied in-process.
 */

/** Numbers per connection; lists of ids follow separately. */
const SLOTS = 25;
/**
 * How the first 22 slots become the first 22 columns of `connections`: t a text's code
 * (-1 null), n a number, o a number or null (NaN). The last three columns are the id lists.
 */
const COLUMN_KINDS = "nttntnttttototnnntntto";
const TEXT = "t".charCodeAt(0);
const NUMBER_OR_NULL = "o".charCodeAt(0);
const COLUMNS = COLUMN_KINDS.length + 3;
const BATCH = 1024;
const MAX_DICTIONARY = 1 << 20;
/** Batches the main thread may run ahead of the writer (bounded memory). */
const MAX_IN_FLIGHT = 4;
/** How long to wait for the writer to confirm a commit. */
const STALL_MS = 600_000;

export interface ConnectionBatch {
  count: number;
  nums: Float64Array;
  /** Each connection's leg, translation and conntrack ids, as counted in its slots. */
  ids: Float64Array;
  /** Strings first used in this batch; their codes follow the dictionary's current end. */
  strings: string[];
  reset: boolean;
  /** (path, candidates) pairs first used in this batch, as JSON. */
  paths: { id: number; path: string; candidates: string }[];
}

/** Main thread: connections into batches. */
class ConnectionEncoder {
  private dictionary = new Map<string, number>();
  private fresh: string[] = [];
  private reset = false;
  private readonly pathIds = new Map<string, Map<string, number>>();
  private freshPaths: ConnectionBatch["paths"] = [];
  private readonly json = new WeakMap<object, string>();
  private nums = new Float64Array(BATCH * SLOTS);
  private ids = new Float64Array(BATCH * 4);
  private idCount = 0;
  count = 0;

  constructor(private readonly maxDictionary = MAX_DICTIONARY) {}

  private code(s: string | null): number {
    if (s === null) return -1;
    let c = this.dictionary.get(s);
    if (c === undefined) {
      c = this.dictionary.size;
      this.dictionary.set(s, c);
      this.fresh.push(s);
    }
    return c;
  }

  /** Connections share their path and candidates arrays: serialise each array once. */
  private text(value: object): string {
    let t = this.json.get(value);
    if (t === undefined) {
      t = JSON.stringify(value);
      this.json.set(value, t);
    }
    return t;
  }

  private pathId(path: object, candidates: object): number {
    const p = this.text(path);
    const c = this.text(candidates);
    let byCandidates = this.pathIds.get(p);
    if (byCandidates === undefined) this.pathIds.set(p, (byCandidates = new Map()));
    let id = byCandidates.get(c);
    if (id === undefined) {
      id = this.freshPaths.length + this.knownPaths + 1;
      byCandidates.set(c, id);
      this.freshPaths.push({ id, path: p, candidates: c });
    }
    return id;
  }

  private knownPaths = 0;

  private pushIds(list: readonly number[]): void {
    if (this.idCount + list.length > this.ids.length) {
      const bigger = new Float64Array(Math.max(this.ids.length * 2, this.idCount + list.length));
      bigger.set(this.ids);
      this.ids = bigger;
    }
    for (let i = 0; i < list.length; i++) this.ids[this.idCount++] = list[i] as number;
  }

  /** Add a connection; true when the batch is full. */
  add(c: StoredConnection): boolean {
    const v = this.nums;
    const o = this.count * SLOTS;
    v[o] = c.id;
    v[o + 1] = this.code(c.proto);
    v[o + 2] = this.code(c.client.ip);
    v[o + 3] = c.client.port;
    v[o + 4] = this.code(c.vip.ip);
    v[o + 5] = c.vip.port;
    v[o + 6] = this.code(c.service);
    v[o + 7] = this.code(c.node);
    v[o + 8] = this.code(c.hook);
    v[o + 9] = this.code(c.endpoint?.ip ?? null);
    v[o + 10] = c.endpoint?.port ?? Number.NaN;
    v[o + 11] = this.code(c.snat?.ip ?? null);
    v[o + 12] = c.snat?.port ?? Number.NaN;
    v[o + 13] = this.code(c.verdict);
    v[o + 14] = c.start;
    v[o + 15] = c.end;
    v[o + 16] = this.pathId(c.path, c.candidates);
    v[o + 17] = this.code(c.vipFrom);
    v[o + 18] = c.answered ? 1 : 0;
    v[o + 19] = this.code(c.refusal);
    v[o + 20] = this.code(c.connState);
    v[o + 21] = c.rulesetId ?? Number.NaN;
    v[o + 22] = c.legIds.length;
    v[o + 23] = c.translationIds.length;
    v[o + 24] = c.conntrackIds.length;
    this.pushIds(c.legIds);
    this.pushIds(c.translationIds);
    this.pushIds(c.conntrackIds);
    return ++this.count === BATCH;
  }

  /** The batch so far (the encoder starts a new one). */
  take(): ConnectionBatch {
    const batch: ConnectionBatch = {
      count: this.count,
      nums: this.nums,
      ids: this.ids.slice(0, this.idCount),
      strings: this.fresh,
      reset: this.reset,
      paths: this.freshPaths,
    };
    this.knownPaths += this.freshPaths.length;
    this.nums = new Float64Array(BATCH * SLOTS);
    this.idCount = 0;
    this.count = 0;
    this.fresh = [];
    this.freshPaths = [];
    this.reset = false;
    if (this.dictionary.size > this.maxDictionary) {
      this.dictionary = new Map();
      this.reset = true;
    }
    return batch;
  }
}

type WriterMessage =
  | { op: "begin" }
  | { op: "batch"; batch: ConnectionBatch }
  | { op: "finding"; finding: StoredFinding }
  | { op: "run"; seconds: number; stats: string }
  | { op: "commit" }
  | { op: "rollback" };

type WriterReply = { done: true } | { error: string };

/** Writer side: decodes batches and writes them in one transaction. */
export class AnalysisSink {
  private readonly insConn;
  private readonly insPath;
  private readonly insFinding;
  private readonly insRun;
  private dictionary: string[] = [];

  constructor(private readonly db: Db) {
    // 25 columns x 40 rows stay far below SQLite's 32,766 bound parameters.
    this.insConn = new RowBatch(db, "INSERT INTO connections VALUES", COLUMNS, 40);
    this.insPath = db.prepare(
      "INSERT INTO connection_paths (id, path, candidates) VALUES (?, ?, ?)",
    );
    this.insFinding = db.prepare(
      "INSERT INTO findings (check_id, severity, service, node, from_ts, to_ts, summary, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.insRun = db.prepare("INSERT INTO analysis_runs (ran_at, seconds, stats) VALUES (?, ?, ?)");
  }

  apply(message: WriterMessage): void {
    switch (message.op) {
      case "begin":
        this.db.exec("BEGIN");
        this.db.exec(
          "DELETE FROM connections; DELETE FROM connection_paths; DELETE FROM findings;",
        );
        this.dictionary = [];
        return;
      case "batch":
        this.write(message.batch);
        return;
      case "finding": {
        const f = message.finding;
        this.insFinding.run(
          f.check,
          f.severity,
          f.service,
          f.node,
          f.from,
          f.to,
          f.summary,
          JSON.stringify(f.evidence),
        );
        return;
      }
      case "run":
        this.insRun.run(Date.now() / 1000, message.seconds, message.stats);
        return;
      case "commit":
        this.insConn.flush();
        this.db.exec("COMMIT");
        return;
      case "rollback":
        this.rollback();
        return;
    }
  }

  rollback(): void {
    if (this.db.inTransaction) this.db.exec("ROLLBACK");
  }

  private write(b: ConnectionBatch): void {
    if (b.reset) this.dictionary = [];
    for (const s of b.strings) this.dictionary.push(s);
    for (const p of b.paths) this.insPath.run(p.id, p.path, p.candidates);
    const d = this.dictionary;
    const text = (c: number) => (c < 0 ? null : (d[c] ?? null));
    const num = (x: number) => (Number.isNaN(x) ? null : x);
    const nums = b.nums;
    const ids = b.ids;
    let at = 0;
    const list = (n: number): string => {
      if (n === 0) return "[]";
      let s = "[";
      for (let i = 0; i < n; i++) s += i === 0 ? ids[at++] : `,${ids[at++]}`;
      return `${s}]`;
    };
    for (let i = 0; i < b.count; i++) {
      const o = i * SLOTS;
      const v = this.insConn.values;
      const r = this.insConn.next();
      for (let k = 0; k < COLUMN_KINDS.length; k++) {
        const x = nums[o + k] as number;
        const kind = COLUMN_KINDS.charCodeAt(k);
        v[r + k] = kind === TEXT ? text(x) : kind === NUMBER_OR_NULL ? num(x) : x;
      }
      // Columns are translation_ids, conntrack_ids, leg_ids; the ids come legs first.
      const legs = list(nums[o + 22] as number);
      v[r + 22] = list(nums[o + 23] as number);
      v[r + 23] = list(nums[o + 24] as number);
      v[r + 24] = legs;
      this.insConn.added();
    }
  }
}

const WORKER = new URL("./analysis-writer-worker.js", import.meta.url);

/** Run in the worker: apply messages until commit or rollback, then report. */
export function serveWriter(db: Db, port: MessagePort, control: Control): void {
  const sink = new AnalysisSink(db);
  const reply = (message: WriterReply) => {
    port.postMessage(message);
    signalPosted(control);
  };
  port.on("message", (message: WriterMessage) => {
    if (failed(control)) {
      if (message.op === "batch") countConsumed(control);
      return;
    }
    try {
      sink.apply(message);
      if (message.op === "batch") countConsumed(control);
      if (message.op === "commit" || message.op === "rollback") {
        db.close();
        reply({ done: true });
      }
    } catch (error) {
      markFailed(control);
      try {
        sink.rollback();
      } catch {
        // The connection is unusable; closing it discards the transaction all the same.
      }
      reply({ error: (error as Error).message });
    }
  });
}

export interface AnalysisWriterOptions {
  /** Write in a worker thread; default: when the database is a file and the worker is built. */
  thread?: boolean;
  /** For tests of the dictionary's reset. */
  maxDictionary?: number;
}

/** Can the writer run in a worker thread? Not from the TypeScript sources (tests), nor in memory. */
export function writerThreadAvailable(db: Db): boolean {
  return !db.memory && existsSync(fileURLToPath(WORKER));
}

/**
 * Replaces the previous analysis in one transaction: one run per writer (`begin`, then `commit`
 * or `rollback`). Connections written are readable (by any connection) only after `commit`.
 */
export class AnalysisWriter {
  private encoder;
  private readonly maxDictionary: number | undefined;
  private readonly local: AnalysisSink | null;
  private readonly port: MessagePort | null = null;
  private readonly control: Control | null = null;
  private worker: Worker | null = null;

  constructor(db: Db, options: AnalysisWriterOptions = {}) {
    this.maxDictionary = options.maxDictionary;
    this.encoder = new ConnectionEncoder(options.maxDictionary);
    if (options.thread ?? writerThreadAvailable(db)) {
      const { port1, port2 } = new MessageChannel();
      this.port = port1;
      this.control = newControl();
      this.worker = new Worker(WORKER, {
        workerData: { path: db.name, port: port2, control: this.control },
        transferList: [port2],
      });
      this.worker.unref();
      this.local = null;
    } else {
      this.local = new AnalysisSink(db);
    }
  }

  private send(message: WriterMessage, transfer: ArrayBuffer[] = []): void {
    if (this.local !== null) {
      this.local.apply(message);
      return;
    }
    const port = this.port as MessagePort;
    const control = this.control as Control;
    if (message.op === "batch") {
      waitForRoom(control, MAX_IN_FLIGHT);
      countPosted(control);
    }
    // A writer that failed says so at once: stop sending it work.
    if (failed(control)) this.awaitReply();
    port.postMessage(message, transfer);
  }

  /** The writer's answer to commit or rollback (or its failure); throws on failure. */
  private awaitReply(): void {
    const port = this.port as MessagePort;
    const reply = (receiveNow(port) ??
      receiveBlocking(port, this.control as Control, STALL_MS, "the analysis writer thread")) as
      | WriterReply
      | undefined;
    this.stop();
    if (reply !== undefined && "error" in reply) {
      throw new Error(`writing the analysis failed: ${reply.error}`);
    }
  }

  private stop(): void {
    this.port?.close();
    void this.worker?.terminate();
    this.worker = null;
  }

  /** Start a run: the previous results go when it commits. */
  begin(): void {
    this.encoder = new ConnectionEncoder(this.maxDictionary);
    this.send({ op: "begin" });
  }

  addConnection(c: StoredConnection): void {
    if (this.encoder.add(c)) this.sendBatch();
  }

  private sendBatch(): void {
    const batch = this.encoder.take();
    this.send({ op: "batch", batch }, [
      batch.nums.buffer as ArrayBuffer,
      batch.ids.buffer as ArrayBuffer,
    ]);
  }

  addFinding(finding: StoredFinding): void {
    this.send({ op: "finding", finding });
  }

  recordRun(seconds: number, stats: unknown): void {
    this.send({ op: "run", seconds, stats: JSON.stringify(stats) });
  }

  commit(): void {
    if (this.encoder.count > 0) this.sendBatch();
    this.send({ op: "commit" });
    if (this.local === null) this.awaitReply();
  }

  /** Drop everything since `begin`; the previous results stay. */
  rollback(): void {
    if (this.local !== null) {
      this.local.rollback();
      return;
    }
    if (this.worker === null) return;
    try {
      this.port?.postMessage({ op: "rollback" });
      this.awaitReply();
    } catch {
      // A writer that failed has rolled back already; the first error is what counts.
    } finally {
      this.stop();
    }
  }
}
