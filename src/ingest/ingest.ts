import { createHash } from "node:crypto";
import {
  closeSync,
  createReadStream,
  type Dirent,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  statSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { parseIptablesSave } from "../rules/iptables-save.js";
import { looksLikePodEnv, podEnvDocument } from "../rules/pod-env.js";
import type { Db } from "../store/db.js";
import { StoreWriter } from "../store/writer.js";
import { hexPreview, InputError } from "../util/errors.js";
import { ingestCaptureFile } from "./capture-file.js";
import { nodeFromPath, timeFromFileName } from "./naming.js";
import { type InputKind, iptablesFamily, SNIFF_BYTES, sniffInput } from "./sniff.js";

export interface IngestOptions {
  /** Every input is a pod's `env` dump for this pod ("ns/name"); see src/rules/pod-env.ts. */
  pod?: string;
  /** When that pod started (its env was fixed then), epoch seconds. */
  startedAt?: number;
  /** Node of every input (else derived from the path, see naming.ts). */
  node?: string;
  /** Time of every snapshot input (rule dumps, conntrack, inventory), overriding headers. */
  takenAt?: number;
  udpIdleTimeout?: number;
  tcpIdleTimeout?: number;
  onEvent?: (event: IngestEvent) => void;
}

export type FileStatus = "ingested" | "duplicate" | "skipped" | "failed";

export interface FileResult {
  path: string;
  kind: InputKind | null;
  node: string | null;
  status: FileStatus;
  /** Why skipped/failed, or what a duplicate duplicates. */
  message: string | null;
  bytes: number;
  packets: number;
  legs: number;
  translations: number;
  dnsMessages: number;
  anomalies: Record<string, number>;
  warnings: string[];
  rules: number;
  conntrackEntries: number;
  services: number;
  endpoints: number;
}

export type IngestEvent =
  | { type: "plan"; files: number; totalBytes: number }
  | {
      type: "progress";
      path: string;
      /** Bytes done over all files, counting the current one's progress. */
      doneBytes: number;
      totalBytes: number;
      /** Packets so far over all files. */
      packets: number;
    }
  | { type: "file-done"; result: FileResult };

export interface IngestSummary {
  files: number;
  duplicates: number;
  skipped: number;
  failed: number;
  packets: number;
  bytes: number;
  legs: number;
  translations: number;
  dnsMessages: number;
  anomalies: Record<string, number>;
  warnings: string[];
  rules: number;
  conntrackEntries: number;
  services: number;
  endpoints: number;
  seconds: number;
  results: FileResult[];
}

interface PlannedFile {
  path: string;
  size: number;
  /** Named on the command line (an unknown kind is an error) rather than found in a directory. */
  explicit: boolean;
}

/** Expand files and directories (recursively, sorted, hidden entries skipped) into files. */
export function planInputs(paths: string[]): PlannedFile[] {
  const out: PlannedFile[] = [];
  const walk = (dir: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (error) {
      throw new InputError(
        `cannot read directory: ${(error as Error).message}`,
        { file: dir },
        { cause: error },
      );
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push({ path: p, size: statSync(p).size, explicit: false });
    }
  };
  for (const path of paths) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch (error) {
      throw new InputError("no such file or directory", { file: path }, { cause: error });
    }
    if (st.isDirectory()) walk(path);
    else out.push({ path, size: st.size, explicit: true });
  }
  return out;
}

function readHeadBytes(path: string, n: number): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * SHA-256 of a capture from the chunks the capture reader reads anyway: one pass over the file
 * instead of a second read (on a worker, that second read and the worker's start-up cost ~40%
 * more CPU than the hash itself).
 */
class ChunkHash {
  private readonly hash = createHash("sha256");
  bytes = 0;

  readonly update = (chunk: Buffer): void => {
    this.bytes += chunk.length;
    this.hash.update(chunk);
  };

  /** The digest when the reader saw all `size` bytes, else (it stopped early) a fresh pass. */
  async digest(path: string, size: number): Promise<string> {
    return this.bytes === size ? this.hash.digest("hex") : sha256File(path);
  }
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function readText(path: string, compressed: boolean): string {
  const bytes = readFileSync(path);
  try {
    return (compressed ? gunzipSync(bytes) : bytes).toString("utf8");
  } catch (error) {
    throw new InputError(
      `corrupt gzip data: ${(error as Error).message}`,
      { file: path },
      { cause: error },
    );
  }
}

/** Kinds that describe the cluster, not one node. */
const CLUSTER_KINDS = new Set<InputKind>(["kubernetes-json", "bundle-json"]);
/** Kinds that are snapshots and need a time. */
const SNAPSHOT_KINDS = new Set<InputKind>([
  "iptables-save",
  "iptables-restore",
  "conntrack",
  "kubernetes-json",
  "nft-json",
  "ipset-save",
  "ipvsadm-save",
]);

function emptyResult(
  path: string,
  kind: InputKind | null,
  node: string | null,
  status: FileStatus,
  message: string | null,
): FileResult {
  return {
    path,
    kind,
    node,
    status,
    message,
    bytes: 0,
    packets: 0,
    legs: 0,
    translations: 0,
    dnsMessages: 0,
    anomalies: {},
    warnings: [],
    rules: 0,
    conntrackEntries: 0,
    services: 0,
    endpoints: 0,
  };
}

/**
 * Ingest files and directories into the database. Each file is one transaction: it is stored
 * completely or not at all. An input already stored is skipped: a capture with the same content
 * (sha256), a snapshot with the same content, node and time. Bad input in one file (InputError)
 * is reported in its result and the others still go in; any other error is a bug and is thrown
 * after rolling that file back.
 */
export async function ingestPaths(
  db: Db,
  paths: string[],
  options: IngestOptions = {},
): Promise<IngestSummary> {
  const started = performance.now();
  const planned = planInputs(paths);
  const totalBytes = planned.reduce((s, f) => s + f.size, 0);
  const emit = options.onEvent ?? (() => {});
  emit({ type: "plan", files: planned.length, totalBytes });
  const writer = new StoreWriter(db);
  const summary: IngestSummary = {
    files: 0,
    duplicates: 0,
    skipped: 0,
    failed: 0,
    packets: 0,
    bytes: 0,
    legs: 0,
    translations: 0,
    dnsMessages: 0,
    anomalies: {},
    warnings: [],
    rules: 0,
    conntrackEntries: 0,
    services: 0,
    endpoints: 0,
    seconds: 0,
    results: [],
  };
  let doneBytes = 0;
  for (const file of planned) {
    let result: FileResult;
    try {
      result = await ingestOne(writer, file, options, (bytes, packets) =>
        emit({
          type: "progress",
          path: file.path,
          doneBytes: doneBytes + Math.min(bytes, file.size),
          totalBytes,
          packets: summary.packets + packets,
        }),
      );
    } catch (error) {
      // ingestOne has rolled its transaction back.
      if (!(error instanceof InputError)) throw error;
      result = emptyResult(file.path, null, null, "failed", error.message);
    }
    doneBytes += file.size;
    summary.results.push(result);
    if (result.status === "ingested") summary.files++;
    else if (result.status === "duplicate") summary.duplicates++;
    else if (result.status === "skipped") summary.skipped++;
    else summary.failed++;
    summary.packets += result.packets;
    summary.bytes += result.bytes;
    summary.legs += result.legs;
    summary.translations += result.translations;
    summary.dnsMessages += result.dnsMessages;
    summary.rules += result.rules;
    summary.conntrackEntries += result.conntrackEntries;
    summary.services += result.services;
    summary.endpoints += result.endpoints;
    for (const [k, v] of Object.entries(result.anomalies))
      summary.anomalies[k] = (summary.anomalies[k] ?? 0) + v;
    for (const w of result.warnings) summary.warnings.push(`${result.path}: ${w}`);
    emit({ type: "file-done", result });
  }
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

async function ingestOne(
  writer: StoreWriter,
  file: PlannedFile,
  options: IngestOptions,
  progress: (bytes: number, packets: number) => void,
): Promise<FileResult> {
  const { path } = file;
  const sniffed = sniffInput(readHeadBytes(path, SNIFF_BYTES));
  // Pod env dumps (`kubectl exec POD -- env`) for the env-discovery check: src/rules/pod-env.ts.
  if (options.pod !== undefined || (sniffed === null && looksLikePodEnv(readHeadText(path)))) {
    return ingestPodEnv(writer, file, options);
  }
  if (sniffed === null) {
    const why =
      file.size === 0
        ? "empty file"
        : `not a capture, rule dump, conntrack table or Kubernetes JSON (first bytes: ${hexPreview(readHeadBytes(path, 16))})`;
    if (file.explicit) throw new InputError(why, { file: path });
    return emptyResult(
      path,
      null,
      null,
      "skipped",
      file.size === 0 ? why : "not an input svctrace reads",
    );
  }
  const { kind, compressed } = sniffed;
  if (kind === "lab-json")
    return emptyResult(path, kind, null, "skipped", "lab ground truth, not an input");
  const node = CLUSTER_KINDS.has(kind) ? null : (options.node ?? nodeFromPath(path));
  const fileTime = options.takenAt ?? timeFromFileName(path);
  // A capture is the same capture under any name; a snapshot's content may repeat on another
  // node or at another time (rules unchanged), and that is another snapshot.
  const isCapture = kind === "pcap" || kind === "pcapng";
  // Hashing a large capture is a whole extra pass over it. When no stored capture has this size,
  // it cannot be a duplicate: hash the chunks the ingest reads.
  const hashAside = isCapture && !writer.hasCaptureOfSize(file.size);
  const pending = hashAside ? new ChunkHash() : null;
  const sha256 = pending === null ? await sha256File(path) : "";
  const identity = isCapture ? sha256 : `${sha256} ${node ?? "-"} ${fileTime ?? "-"}`;
  const previous = pending === null ? writer.findInput(identity) : undefined;
  if (previous !== undefined) {
    const what = isCapture ? "same content" : "same content, node and time";
    return emptyResult(
      path,
      kind,
      node,
      "duplicate",
      `already in the database (${what} as ${previous.path})`,
    );
  }
  const result = emptyResult(path, kind, node, "ingested", null);
  result.bytes = file.size;
  const source = resolve(path);
  writer.begin();
  try {
    const inputId = writer.addInput({
      // Unique until the hash arrives: the path is unique among the files of one run.
      identity: pending === null ? identity : `pending ${resolve(path)}`,
      sha256,
      path: source,
      kind,
      node,
      size: file.size,
      takenAt: fileTime,
    });
    if (isCapture) {
      const capture = { inputId, path: source, sha256, format: kind, compressed, node };
      const captureId = writer.addCapture(capture);
      await ingestCapture(writer, captureId, node, options, result, progress, pending);
      if (pending !== null)
        writer.setCaptureHash(inputId, captureId, await pending.digest(path, file.size));
    } else {
      await ingestText(
        writer,
        inputId,
        source,
        sha256,
        kind,
        node,
        compressed,
        options,
        fileTime,
        result,
      );
      progress(file.size, 0);
    }
    writer.commit();
  } catch (error) {
    writer.rollback();
    throw error;
  }
  return result;
}

function readHeadText(path: string): string {
  return Buffer.from(readHeadBytes(path, SNIFF_BYTES)).toString("utf8");
}

function ingestPodEnv(writer: StoreWriter, file: PlannedFile, options: IngestOptions): FileResult {
  const source = resolve(file.path);
  const raw = readFileSync(file.path, "utf8");
  const doc = podEnvDocument(raw, file.path, options.pod ?? null, options.startedAt ?? null);
  const sha256 = createHash("sha256").update(raw).digest("hex");
  const identity = `${sha256} pod-env ${doc.env.pod ?? "-"}`;
  const previous = writer.findInput(identity);
  if (previous !== undefined) {
    return emptyResult(
      file.path,
      null,
      null,
      "duplicate",
      `already in the database (${previous.path})`,
    );
  }
  writer.begin();
  try {
    const inputId = writer.addInput({
      identity,
      sha256,
      path: source,
      kind: "pod-env",
      node: null,
      size: file.size,
      takenAt: doc.env.startedAt,
    });
    writer.addDocument(inputId, "pod-env", doc.env.pod, doc.env.startedAt, source, doc.text);
    writer.commit();
  } catch (error) {
    writer.rollback();
    throw error;
  }
  const result = emptyResult(file.path, null, null, "ingested", null);
  result.bytes = file.size;
  return result;
}

async function ingestCapture(
  writer: StoreWriter,
  captureId: number,
  node: string | null,
  options: IngestOptions,
  result: FileResult,
  progress: (bytes: number, packets: number) => void,
  hash: ChunkHash | null,
): Promise<void> {
  let lastProgress = 0;
  const s = await ingestCaptureFile(
    result.path,
    {
      interfaces(list) {
        for (const i of list) writer.addInterface(captureId, i.id, i.name, i.linkType);
      },
      leg(rec) {
        writer.addLeg(captureId, node, rec);
      },
      translation(rec) {
        writer.addTranslation(captureId, node, rec);
      },
      dns(rec) {
        writer.addDns(captureId, node, rec);
      },
    },
    {
      ...(options.udpIdleTimeout !== undefined ? { udpIdleTimeout: options.udpIdleTimeout } : {}),
      ...(options.tcpIdleTimeout !== undefined ? { tcpIdleTimeout: options.tcpIdleTimeout } : {}),
      onProgress(bytes, packets) {
        const now = performance.now();
        if (now - lastProgress < 100) return;
        lastProgress = now;
        progress(bytes, packets);
      },
      ...(hash === null ? {} : { onRawChunk: hash.update }),
    },
  );
  writer.setCaptureTotals(captureId, s);
  writer.addAnomalies(captureId, s.anomalies);
  result.packets = s.packets;
  result.legs = s.legs;
  result.translations = s.translations;
  result.dnsMessages = s.dnsMessages;
  result.anomalies = { ...s.anomalies };
  result.warnings.push(...s.warnings);
}

/**
 * The header's time (`# Generated by … on <ctime>`) has whole seconds; a bundle's file name may
 * carry milliseconds (the lab's). When both name the same second, the name is the finer one;
 * otherwise (another time zone, a renamed file) the header, written by the tool itself, wins.
 * `--taken-at` arrives here as `fileTime` and as the parser's override, so it always wins.
 */
function dumpTime(header: number | null, fileTime: number | null): number | null {
  if (header === null) return fileTime;
  if (fileTime !== null && Math.abs(fileTime - header) < 1) return fileTime;
  return header;
}

/**
 * rows.ts pulls in the Kubernetes parser and with it zod and yaml: ~0.3 s of CPU to load, which
 * a run of captures alone should not pay.
 */
const loadRows = () => import("./rows.js");

async function ingestText(
  writer: StoreWriter,
  inputId: number,
  path: string,
  sha256: string,
  kind: InputKind,
  node: string | null,
  compressed: boolean,
  options: IngestOptions,
  fileTime: number | null,
  result: FileResult,
): Promise<void> {
  const text = readText(path, compressed);
  const undated = (): null => {
    if (SNAPSHOT_KINDS.has(kind))
      result.warnings.push("no time in the file or its name; give --taken-at");
    return null;
  };
  switch (kind) {
    case "iptables-save": {
      const rs = parseIptablesSave(text, {
        source: path,
        ...(options.takenAt !== undefined ? { takenAt: options.takenAt } : {}),
      });
      const takenAt = dumpTime(rs.takenAt, fileTime) ?? undated();
      const id = writer.addRuleSet({
        inputId,
        node,
        kind,
        family: rs.family,
        takenAt,
        generator: rs.generator,
        source: path,
        sha256,
        rawText: text,
      });
      for (const table of rs.tables.values()) {
        for (const chain of table.chains.values()) {
          for (const r of chain.rules) {
            writer.addRule(id, {
              table: r.table,
              chain: r.chain,
              index: r.index,
              line: r.line,
              raw: r.raw,
              target: r.target?.name ?? null,
              comment: r.comment,
            });
            result.rules++;
          }
        }
      }
      break;
    }
    case "iptables-restore":
      // A partial restore only means something on top of the node's earlier rules: kept as text
      // for the reader to apply (rules/iptables-save.ts applyRestore) in time order.
      writer.addRuleSet({
        inputId,
        node,
        kind,
        family: iptablesFamily(text),
        takenAt: fileTime ?? undated(),
        generator: null,
        source: path,
        sha256,
        rawText: text,
      });
      break;
    case "conntrack": {
      const takenAt = fileTime ?? undated();
      const { conntrackRows } = await loadRows();
      for (const row of conntrackRows(text, path)) {
        writer.addConntrack(inputId, node, takenAt, row);
        result.conntrackEntries++;
      }
      break;
    }
    case "kubernetes-json": {
      const { inventoryRows } = await loadRows();
      const rows = inventoryRows(text, path);
      const id = writer.addInventory(inputId, fileTime ?? undated(), path, text);
      for (const s of rows.services) writer.addService(id, s);
      for (const e of rows.endpoints) writer.addEndpoint(id, e);
      result.services = rows.services.length;
      result.endpoints = rows.endpoints.length;
      break;
    }
    default:
      writer.addDocument(
        inputId,
        kind,
        node,
        SNAPSHOT_KINDS.has(kind) ? (fileTime ?? undated()) : null,
        path,
        text,
      );
  }
}
