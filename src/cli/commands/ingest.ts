import type { Command } from "commander";
import {
  type IngestEvent,
  type IngestOptions,
  type IngestSummary,
  ingestPaths,
} from "../../ingest/ingest.js";
import { openDb } from "../../store/db.js";
import { nameInterfacesFromAddrDumps } from "../../store/interface-names.js";
import { InputError, UsageError } from "../../util/errors.js";
import { parseTimeArg } from "../../util/time.js";

interface IngestCliOptions {
  db: string;
  node?: string;
  takenAt?: string;
  pod?: string;
  startedAt?: string;
  udpIdleTimeout?: string;
  json?: boolean;
}

const MB = 1024 * 1024;

/** 1234567 → "1,234,567" (toLocaleString would load ICU: a fifth of a second at start). */
export function formatCount(n: number): string {
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)} k`;
  return perSecond.toFixed(0);
}

/** A one-line progress display on a terminal: bytes, packets, rate, ETA. */
export function progressReporter(stream: NodeJS.WriteStream): (e: IngestEvent) => void {
  const started = performance.now();
  let shown = false;
  return (e) => {
    if (e.type === "progress") {
      const secs = (performance.now() - started) / 1000;
      const rate = secs > 0 ? e.packets / secs : 0;
      const byteRate = secs > 0 ? e.doneBytes / secs : 0;
      const eta = byteRate > 0 ? (e.totalBytes - e.doneBytes) / byteRate : 0;
      const line =
        `${(e.doneBytes / MB).toFixed(1)}/${(e.totalBytes / MB).toFixed(1)} MB  ` +
        `${formatCount(e.packets)} packets  ${formatRate(rate)} packets/s  ETA ${eta.toFixed(0)} s`;
      stream.write(`\r\x1b[K${line}`);
      shown = true;
    } else if (e.type === "file-done" && shown) {
      stream.write("\r\x1b[K");
      shown = false;
    }
  };
}

export function describeFile(e: Extract<IngestEvent, { type: "file-done" }>): string {
  const r = e.result;
  if (r.status === "duplicate" || r.status === "skipped")
    return `${r.path}: ${r.status}: ${r.message}`;
  if (r.status === "failed") return `${r.path}: failed: ${r.message}`;
  const parts: string[] = [r.kind ?? "?"];
  if (r.node !== null) parts.push(`node ${r.node}`);
  if (r.kind === "pcap" || r.kind === "pcapng") {
    parts.push(
      `${formatCount(r.packets)} packets`,
      `${formatCount(r.legs)} legs`,
      `${formatCount(r.translations)} translations`,
    );
  }
  if (r.rules > 0) parts.push(`${formatCount(r.rules)} rules`);
  if (r.kind === "conntrack") parts.push(`${formatCount(r.conntrackEntries)} entries`);
  if (r.kind === "kubernetes-json")
    parts.push(`${r.services} services`, `${r.endpoints} endpoints`);
  return `${r.path}: ${parts.join(", ")}`;
}

export function formatSummary(s: IngestSummary, db: string): string {
  const lines: string[] = [];
  const extra = [`${s.duplicates} already present`, `${s.skipped} skipped`, `${s.failed} failed`];
  lines.push(
    `ingested ${s.files} file${s.files === 1 ? "" : "s"} into ${db} (${extra.join(", ")}) in ${s.seconds.toFixed(2)} s`,
  );
  const pps = s.seconds > 0 ? s.packets / s.seconds : 0;
  const row = (label: string, n: number, tail = "") =>
    lines.push(`  ${label.padEnd(14)}${formatCount(n).padStart(12)}${tail}`);
  row("packets", s.packets, s.packets > 0 ? `  (${formatRate(pps)} packets/s)` : "");
  row("legs", s.legs);
  row("translations", s.translations);
  if (s.dnsMessages > 0) row("dns messages", s.dnsMessages);
  if (s.rules > 0) row("rules", s.rules);
  if (s.conntrackEntries > 0) row("conntrack", s.conntrackEntries);
  if (s.services > 0 || s.endpoints > 0) {
    row("services", s.services);
    row("endpoints", s.endpoints);
  }
  const anomalies = Object.entries(s.anomalies).sort((a, b) => b[1] - a[1]);
  const total = anomalies.reduce((n, [, c]) => n + c, 0);
  row("anomalies", total);
  for (const [name, count] of anomalies.slice(0, 10))
    lines.push(`    ${name} ${formatCount(count)}`);
  row("warnings", s.warnings.length);
  for (const w of s.warnings.slice(0, 10)) lines.push(`    ${w}`);
  if (s.warnings.length > 10) lines.push(`    … and ${s.warnings.length - 10} more`);
  return lines.join("\n");
}

export function parseTakenAt(text: string): number {
  const t = parseTimeArg(text);
  if (t === null)
    throw new UsageError(
      `--taken-at: not an ISO 8601 time or epoch seconds: ${JSON.stringify(text)}`,
    );
  return t;
}

/** Runs an ingest with the CLI's progress and messages; shared by `ingest` and `demo`. */
export async function runIngest(
  dbPath: string,
  paths: string[],
  options: IngestOptions,
  json: boolean,
): Promise<IngestSummary> {
  const db = openDb(dbPath);
  const progress = process.stderr.isTTY ? progressReporter(process.stderr) : null;
  let summary: IngestSummary;
  try {
    summary = await ingestPaths(db, paths, {
      ...options,
      onEvent(e) {
        progress?.(e);
        if (e.type === "file-done" && !json) {
          const line = describeFile(e);
          if (e.result.status === "failed") process.stderr.write(`svctrace: ${line}\n`);
          else process.stderr.write(`${line}\n`);
        }
      },
    });
    nameInterfacesFromAddrDumps(db);
    // Fold the WAL back into the main file so the database is one self-contained file.
    db.pragma("wal_checkpoint(TRUNCATE)");
  } finally {
    db.close();
  }
  return summary;
}

export function registerIngest(program: Command): void {
  program
    .command("ingest")
    .description(
      "store captures, rule dumps, conntrack tables and Kubernetes JSON (files or directories) in the database",
    )
    .argument("<paths...>", "files or directories (recursive); kinds are told by content")
    .option("--db <file>", "database (created if missing)", "svctrace.db")
    .option("--node <name>", "node of every input (default: from the path, see README)")
    .option(
      "--taken-at <time>",
      "time of rule dumps, conntrack and inventory snapshots (ISO 8601 or epoch seconds)",
    )
    .option("--udp-idle-timeout <seconds>", "a UDP leg idle this long ends (default 120)")
    .option(
      "--pod <ns/name>",
      "the inputs are this pod's `env` dumps (for the env-discovery check)",
    )
    .option("--started-at <time>", "with --pod: when the pod started (ISO 8601 or epoch seconds)")
    .option("--json", "print the summary as one JSON object")
    .action(async (paths: string[], opts: IngestCliOptions) => {
      const options: IngestOptions = {};
      if (opts.node !== undefined) {
        if (opts.node.trim() === "") throw new UsageError("--node: empty name");
        options.node = opts.node;
      }
      if (opts.takenAt !== undefined) options.takenAt = parseTakenAt(opts.takenAt);
      if (opts.pod !== undefined) options.pod = opts.pod;
      if (opts.startedAt !== undefined) {
        if (opts.pod === undefined) throw new UsageError("--started-at needs --pod");
        options.startedAt = parseTakenAt(opts.startedAt);
      }
      if (opts.udpIdleTimeout !== undefined) {
        const n = Number(opts.udpIdleTimeout);
        if (!(n > 0))
          throw new UsageError(
            `--udp-idle-timeout: not a positive number: ${JSON.stringify(opts.udpIdleTimeout)}`,
          );
        options.udpIdleTimeout = n;
      }
      const json = opts.json ?? false;
      const summary = await runIngest(opts.db, paths, options, json);
      if (json) {
        const { results, ...totals } = summary;
        process.stdout.write(`${JSON.stringify({ ...totals, db: opts.db, results })}\n`);
      } else {
        process.stdout.write(`${formatSummary(summary, opts.db)}\n`);
      }
      if (summary.failed > 0) {
        throw new InputError(
          `${summary.failed} of ${summary.results.length} inputs failed (see above); the others were stored`,
        );
      }
    });
}
