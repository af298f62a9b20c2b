import { type Command, Option } from "commander";
import { type AnalyzeProgress, type AnalyzeSummary, analyze } from "../../checks/analyze.js";
import { openDb } from "../../store/db.js";
import { UsageError } from "../../util/errors.js";
import { EXIT_FAIL_ON, ExitRequest } from "../exit.js";

interface AnalyzeOptions {
  db: string;
  failOn?: "error" | "warning";
  skew: string;
  grace: string;
  minSamples: string;
  nodeportRange: string;
  clusterDomain: string;
  json?: boolean;
}

function positive(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0)
    throw new UsageError(`${name} must be a non-negative number, got ${JSON.stringify(text)}`);
  return n;
}

export function parseRange(text: string): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(text);
  if (m === null || Number(m[1]) > Number(m[2])) {
    throw new UsageError(
      `--nodeport-range must be LOW-HIGH (e.g. 30000-32767), got ${JSON.stringify(text)}`,
    );
  }
  return [Number(m[1]), Number(m[2])];
}

/** 3 when a finding at or above the --fail-on severity exists. */
export function failOnHit(
  failOn: "error" | "warning" | undefined,
  counts: { error: number; warning: number },
): boolean {
  if (failOn === undefined) return false;
  return counts.error > 0 || (failOn === "warning" && counts.warning > 0);
}

/** A one-line progress display on a terminal while a large analysis runs. */
export function analyzeProgressLine(stream: { write(text: string): unknown }): {
  show: (p: AnalyzeProgress) => void;
  clear: () => void;
} {
  let shown = false;
  return {
    show(p) {
      const pct = p.total > 0 ? Math.min(100, (100 * p.read) / p.total) : 0;
      const rate = p.seconds > 0 ? p.connections / p.seconds : 0;
      const eta = p.read > 0 ? (p.seconds * (p.total - p.read)) / p.read : 0;
      stream.write(
        `\r\x1b[K${pct.toFixed(0)}% of ${p.total} legs and translations  ${p.connections} connections  ${rate.toFixed(0)}/s  ETA ${eta.toFixed(0)} s`,
      );
      shown = true;
    },
    clear() {
      if (shown) stream.write("\r\x1b[K");
      shown = false;
    },
  };
}

/** The human summary: connections by verdict, findings by severity, where to look next. */
export function formatAnalyzeSummary(summary: AnalyzeSummary, dbPath: string): string {
  const out: string[] = [];
  const verdicts = Object.entries(summary.verdicts).sort((a, b) => b[1] - a[1]);
  out.push(
    `${summary.connections} connection(s) on ${summary.nodes.length} node(s), ${summary.rulesets} rule set(s), in ${summary.seconds.toFixed(2)}s`,
  );
  for (const [v, n] of verdicts) out.push(`  ${v.padEnd(20)} ${n}`);
  const f = summary.findings;
  out.push(`findings: ${f.error} error(s), ${f.warning} warning(s), ${f.info} info`);
  for (const [check, n] of Object.entries(summary.byCheck)) out.push(`  ${check.padEnd(20)} ${n}`);
  for (const w of summary.warnings.slice(0, 10)) out.push(`warning: ${w}`);
  const next: string[] = [];
  if (f.error + f.warning > 0) next.push(`svctrace findings --db ${dbPath}`);
  const odd = verdicts.filter(([v]) => v !== "consistent" && v !== "predicted");
  if (odd[0] !== undefined) next.push(`svctrace connections --db ${dbPath} --verdict ${odd[0][0]}`);
  if (next.length === 0) next.push(`svctrace connections --db ${dbPath}`);
  out.push(`next: ${next.join("   ")}`);
  return out.join("\n");
}

export function registerAnalyze(program: Command): void {
  program
    .command("analyze")
    .description(
      "reconstruct every Service connection from the ingested legs, translations, conntrack and rules, judge it, and run all checks (replaces the previous results)",
    )
    .option("--db <file>", "database", "svctrace.db")
    .addOption(
      new Option("--fail-on <severity>", "exit 3 when a finding this severe exists").choices([
        "error",
        "warning",
      ]),
    )
    .option("--skew <seconds>", "clock-skew tolerance between nodes' captures", "2")
    .option("--grace <seconds>", "how long a change may take to reach every node's rules", "5")
    .option("--min-samples <n>", "fewest connections before fairness judges a Service", "30")
    .option("--nodeport-range <low-high>", "the cluster's service-node-port-range", "30000-32767")
    .option("--cluster-domain <domain>", "the cluster's DNS domain", "cluster.local")
    .option("--json", "print the summary as one JSON object")
    .action((opts: AnalyzeOptions) => {
      const checks = {
        graceSeconds: positive("--grace", opts.grace),
        minSamples: positive("--min-samples", opts.minSamples),
        nodePortRange: parseRange(opts.nodeportRange),
        clusterDomain: opts.clusterDomain,
      };
      const skew = positive("--skew", opts.skew);
      const db = openDb(opts.db);
      const progress = process.stderr.isTTY ? analyzeProgressLine(process.stderr) : null;
      let summary: ReturnType<typeof analyze>;
      try {
        summary = analyze(db, { skew, checks, ...(progress ? { onProgress: progress.show } : {}) });
      } finally {
        progress?.clear();
        db.close();
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(summary)}\n`);
      } else {
        process.stdout.write(`${formatAnalyzeSummary(summary, opts.db)}\n`);
      }
      if (failOnHit(opts.failOn, summary.findings)) throw new ExitRequest(EXIT_FAIL_ON);
    });
}
