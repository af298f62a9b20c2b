import { mkdtempSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { ingestPaths } from "../../ingest/ingest.js";
import { parseDurationSeconds } from "../../lab/collect.js";
import { type LiveCaptureStats, liveCaptureToFile } from "../../lab/live-capture.js";
import { openDb } from "../../store/db.js";
import { UsageError } from "../../util/errors.js";

interface CaptureCliOptions {
  iface: string;
  filter?: string;
  node?: string;
  count?: string;
  duration?: string;
  db?: string;
  write?: string;
  json?: boolean;
}

function describe(stats: LiveCaptureStats, target: string): string {
  const names = stats.interfaces.map((i) => i.name).join(", ");
  const secs = Number(stats.endNs - stats.startNs) / 1e9;
  const truncated = stats.truncated > 0 ? `, ${stats.truncated} truncated` : "";
  return `captured ${stats.packets} packets on ${names} in ${secs.toFixed(1)} s${truncated} into ${target}\n`;
}

export function registerCapture(program: Command): void {
  program
    .command("capture")
    .description(
      "capture packets live through libpcap (the optional `cap` package) into a pcapng file or straight into a database",
    )
    .option(
      "--iface <name>",
      "interface: any, one device, or several separated by commas (each keeps its name)",
      "any",
    )
    .option("--filter <bpf>", "BPF filter, e.g. 'tcp or udp'")
    .option("--node <name>", "node the capture belongs to (for --db; default: the host name)")
    .option("--count <n>", "stop after this many packets")
    .option("--duration <time>", "stop after this long: 30s, 5m (else Ctrl-C stops)")
    .option("--write <file>", "write a pcapng file")
    .option("--db <file>", "ingest the capture into this SQLite database")
    .option("--json", "print the statistics as JSON")
    .action(async (opts: CaptureCliOptions) => {
      if ((opts.write === undefined) === (opts.db === undefined)) {
        throw new UsageError("give exactly one of --write FILE.pcapng or --db FILE");
      }
      let count: number | undefined;
      if (opts.count !== undefined) {
        if (!/^\d+$/.test(opts.count) || Number(opts.count) === 0) {
          throw new UsageError(
            `--count ${JSON.stringify(opts.count)}: expected a positive whole number`,
          );
        }
        count = Number(opts.count);
      }
      let durationSeconds: number | undefined;
      if (opts.duration !== undefined) {
        const d = parseDurationSeconds(opts.duration);
        if (d === null)
          throw new UsageError(
            `--duration ${JSON.stringify(opts.duration)}: expected e.g. 30s, 5m`,
          );
        durationSeconds = d;
      }
      const controller = new AbortController();
      const onSigint = () => controller.abort();
      process.once("SIGINT", onSigint);
      const tmp = opts.db !== undefined ? mkdtempSync(join(tmpdir(), "svctrace-capture-")) : null;
      try {
        const file = opts.write ?? join(tmp as string, "capture.pcapng");
        if (!opts.json)
          process.stderr.write(
            `capturing on ${opts.iface}${count ? ` (${count} packets)` : ""}…\n`,
          );
        const stats = await liveCaptureToFile(file, {
          iface: opts.iface,
          ...(opts.filter !== undefined ? { filter: opts.filter } : {}),
          ...(count !== undefined ? { count } : {}),
          ...(durationSeconds !== undefined ? { durationSeconds } : {}),
          signal: controller.signal,
        });
        let ingested: { legs: number; translations: number } | null = null;
        if (opts.db !== undefined) {
          const db = openDb(opts.db);
          try {
            const summary = await ingestPaths(db, [file], {
              node: opts.node ?? hostname().split(".")[0] ?? "node",
            });
            if (summary.failed > 0) {
              const failed = summary.results.find((r) => r.status === "failed");
              throw new UsageError(
                `ingest of the capture failed: ${failed?.message ?? "unknown reason"}`,
              );
            }
            ingested = { legs: summary.legs, translations: summary.translations };
          } finally {
            db.close();
          }
        }
        const target = opts.db ?? file;
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify({
              packets: stats.packets,
              truncated: stats.truncated,
              interfaces: stats.interfaces,
              ifindexNames: stats.ifindexNames,
              start: Number(stats.startNs / 1000n) / 1e6,
              end: Number(stats.endNs / 1000n) / 1e6,
              ...(opts.write !== undefined ? { file: opts.write } : {}),
              ...(ingested !== null ? { db: opts.db, ...ingested } : {}),
            })}\n`,
          );
        } else {
          process.stdout.write(describe(stats, target));
          if (ingested !== null) {
            process.stdout.write(
              `  ${ingested.legs} legs, ${ingested.translations} translations\n`,
            );
          }
        }
      } finally {
        process.removeListener("SIGINT", onSigint);
        if (tmp !== null) rmSync(tmp, { recursive: true, force: true });
      }
    });
}
