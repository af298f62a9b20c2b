import { InventoryTimeline, RuleSetTimeline, ServiceIndex } from "../reconstruct/index-services.js";
import { type AnalysisData, loadAnalysis } from "../reconstruct/load.js";
import type { ReconstructInput, ReconstructStats } from "../reconstruct/reconstruct.js";
import { reconstruct } from "../reconstruct/reconstruct.js";
import type { Connection } from "../reconstruct/types.js";
import { iterateConnections } from "../store/analysis-schema.js";
import { AnalysisWriter } from "../store/analysis-writer.js";
import type { Db } from "../store/index.js";
import { openDb } from "../store/index.js";
import { startChecks } from "./index.js";
import type { CheckContext, CheckOptions, Finding, Severity } from "./types.js";
import { DEFAULT_CHECK_OPTIONS } from "./types.js";

export interface AnalyzeOptions {
  /** Clock-skew tolerance between nodes, seconds. */
  skew?: number;
  checks?: Partial<CheckOptions>;
  /** Told how far reconstruction got, every `progressEvery` legs and translations read. */
  onProgress?: (progress: AnalyzeProgress) => void;
  progressEvery?: number;
}

export interface AnalyzeProgress {
  /** Legs and translations read so far, of `total`. */
  read: number;
  total: number;
  connections: number;
  seconds: number;
}

export interface AnalyzeSummary {
  connections: number;
  verdicts: Record<string, number>;
  findings: Record<Severity, number>;
  byCheck: Record<string, number>;
  seconds: number;
  reconstruct: ReconstructStats;
  rulesets: number;
  nodes: string[];
  warnings: string[];
}

/**
 * `svctrace analyze`: reconstruct every connection, run every check, replace the previous
 * results in the database (one transaction).
 */
export function analyze(db: Db, options: AnalyzeOptions = {}): AnalyzeSummary {
  const t0 = performance.now();
  // Legs and translations stream from a second connection: SQLite does not let one connection
  // write (the connections) while a statement of it is still iterating (the legs).
  const reader = db.memory ? null : openDb(db.name, { readonly: true });
  try {
    return run(db, reader ?? db, options, t0);
  } finally {
    reader?.close();
  }
}

/** Reconstruction's progress hook for `onProgress`, with the total counted once up front. */
function progressHooks(
  reader: Db,
  options: AnalyzeOptions,
  t0: number,
): Pick<ReconstructInput, "progress" | "progressEvery"> {
  const report = options.onProgress;
  if (report === undefined) return {};
  const total = (
    reader
      .prepare("SELECT (SELECT count(*) FROM legs) + (SELECT count(*) FROM translations) AS n")
      .get() as { n: number }
  ).n;
  return {
    progress: (stats) =>
      report({
        read: stats.legs + stats.translations,
        total,
        connections: stats.connections,
        seconds: (performance.now() - t0) / 1000,
      }),
    ...(options.progressEvery === undefined ? {} : { progressEvery: options.progressEvery }),
  };
}

/** What the checks read: the loaded inputs, and the connections stored in `db`. */
export function checkContext(
  db: Db,
  data: AnalysisData,
  checks: Partial<CheckOptions> = {},
): CheckContext {
  return {
    nodes: data.nodes,
    services: new ServiceIndex(data.nodes, [
      ...data.rulesets.map((r) => r.services),
      ...data.inventory.map((s) => s.services),
    ]),
    rulesets: new RuleSetTimeline(data.rulesets),
    inventory: new InventoryTimeline(data.inventory),
    // Connections as stored (after analyze committed them): for `runChecks` on its own.
    connections: (verdicts) =>
      iterateConnections(db, verdicts === undefined ? {} : { verdicts }) as Iterable<Connection>,
    conntrack: data.conntrack,
    dns: data.dns,
    podEnvs: data.podEnvs,
    range: data.range,
    options: { ...DEFAULT_CHECK_OPTIONS, ...checks },
  };
}

function run(db: Db, reader: Db, options: AnalyzeOptions, t0: number): AnalyzeSummary {
  const data = loadAnalysis(reader);
  const ctx: CheckContext = {
    ...checkContext(db, data, options.checks),
    // Every check sees the connections as a pass while they are made; the stored ones are the
    // previous run's until this one commits.
    connections: () => {
      throw new Error("analyze: a check read the stored connections instead of being a pass");
    },
  };
  const writer = new AnalysisWriter(db);
  const verdicts: Record<string, number> = {};
  let findings: Finding[] = [];
  let stats: ReconstructStats;
  writer.begin();
  try {
    // The checks' passes see each connection as it is made: no second read of the connections.
    const checkRun = startChecks(ctx);
    stats = reconstruct(
      {
        events: data.events(),
        conntrack: data.conntrack,
        services: ctx.services,
        rulesets: ctx.rulesets,
        simulator: data.simulator,
        ...(options.skew === undefined ? {} : { skew: options.skew }),
        ...progressHooks(reader, options, t0),
      },
      (c) => {
        verdicts[c.verdict] = (verdicts[c.verdict] ?? 0) + 1;
        writer.addConnection(c);
        checkRun.visit(c);
      },
    );
    findings = checkRun.finish();
    for (const f of findings) writer.addFinding(f);
    const seconds = (performance.now() - t0) / 1000;
    writer.recordRun(seconds, { verdicts, findings: findings.length, reconstruct: stats });
    writer.commit();
  } catch (error) {
    writer.rollback();
    throw error;
  }
  const bySeverity: Record<Severity, number> = { error: 0, warning: 0, info: 0 };
  const byCheck: Record<string, number> = {};
  for (const f of findings) {
    bySeverity[f.severity]++;
    byCheck[f.check] = (byCheck[f.check] ?? 0) + 1;
  }
  return {
    connections: stats.connections,
    verdicts,
    findings: bySeverity,
    byCheck,
    seconds: (performance.now() - t0) / 1000,
    reconstruct: stats,
    rulesets: data.rulesets.length,
    nodes: data.nodes.map((n) => n.name),
    warnings: [...data.warnings, ...stats.unmodelled.map((u) => `unmodelled in the rules: ${u}`)],
  };
}
