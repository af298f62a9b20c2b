import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { analyze } from "../../checks/analyze.js";
import { listFindings } from "../../store/analysis-schema.js";
import { openDb } from "../../store/db.js";
import { countLegs, listLegs } from "../../store/queries.js";
import { EnvironmentError } from "../../util/errors.js";
import { formatAnalyzeSummary } from "./analyze.js";
import { formatFindingHuman } from "./findings.js";
import { formatSummary, runIngest } from "./ingest.js";
import { humanLine, interfaceNames } from "./legs.js";

/** The package root: this file is src/cli/commands/demo.ts, or dist/src/cli/commands/demo.js. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) throw new EnvironmentError("cannot find the svctrace package directory");
    dir = up;
  }
  return dir;
}

function bundleTime(dir: string): number {
  try {
    const doc = JSON.parse(readFileSync(join(dir, "bundle.json"), "utf8")) as Record<
      string,
      unknown
    >;
    for (const key of ["created", "createdAt", "created_at", "start", "startedAt"]) {
      const v = doc[key];
      if (typeof v === "string" && !Number.isNaN(Date.parse(v))) return Date.parse(v) / 1000;
      if (typeof v === "number") return v;
    }
  } catch {
    // A bundle.json we cannot read still marks a bundle; it just has no time.
  }
  return 0;
}

/**
 * The newest bundle under traces/: the directory with a bundle.json whose creation time is
 * latest (ties: the last by name, since checkouts make directory times meaningless).
 */
export function newestBundle(tracesDir: string): string | null {
  if (!existsSync(tracesDir)) return null;
  const bundles = readdirSync(tracesDir)
    .map((name) => join(tracesDir, name))
    .filter((p) => statSync(p).isDirectory() && existsSync(join(p, "bundle.json")))
    .map((p) => ({ p, t: bundleTime(p) }))
    .sort((a, b) => a.t - b.t || (a.p < b.p ? -1 : a.p > b.p ? 1 : 0));
  return bundles.at(-1)?.p ?? null;
}

/**
 * The bundle `npm start` shows by default: a Service removed mid-trace whose rules one node
 * kept, the classic "1 in N requests hang after we deleted that Service" — it exercises ingest,
 * reconstruction and the checks at once. Falls back to the newest bundle if it is missing.
 */
export const DEMO_BUNDLE = "03-stale-rules-service-removed";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "ingest and analyze a sample bundle from traces/ into a fresh ./svctrace-demo.db and show what svctrace finds",
    )
    .option("--db <file>", "database (deleted and recreated)", "svctrace-demo.db")
    .option("--bundle <dir>", `a bundle directory instead of traces/${DEMO_BUNDLE}`)
    .action(async (opts: { db: string; bundle?: string }) => {
      const traces = join(packageRoot(), "traces");
      const preferred = join(traces, DEMO_BUNDLE);
      const bundle =
        opts.bundle ??
        (existsSync(join(preferred, "bundle.json")) ? preferred : newestBundle(traces));
      if (bundle === null)
        throw new EnvironmentError("no sample bundle under traces/ (a directory with bundle.json)");
      for (const suffix of ["", "-wal", "-shm"]) rmSync(`${opts.db}${suffix}`, { force: true });
      process.stdout.write(`svctrace demo: ingesting ${resolve(bundle)} into ${opts.db}\n\n`);
      const summary = await runIngest(opts.db, [bundle], {}, false);
      process.stdout.write(`${formatSummary(summary, opts.db)}\n\n`);
      const db = openDb(opts.db);
      try {
        const total = countLegs(db);
        const legs = listLegs(db, { limit: 5 });
        process.stdout.write(
          `first ${legs.length} of ${total} legs (all: svctrace legs --db ${opts.db}):\n`,
        );
        const names = interfaceNames(db);
        for (const leg of legs) process.stdout.write(`${humanLine(leg, names)}\n`);
        process.stdout.write(`\nsvctrace analyze --db ${opts.db}\n`);
        process.stdout.write(`${formatAnalyzeSummary(analyze(db), opts.db)}\n`);
        const findings = listFindings(db, {});
        if (findings.length > 0) process.stdout.write(`\nsvctrace findings --db ${opts.db}\n`);
        for (const f of findings) process.stdout.write(`${formatFindingHuman(f)}\n`);
      } finally {
        db.close();
      }
      if (summary.failed > 0)
        throw new EnvironmentError(`${summary.failed} sample inputs failed to ingest`);
    });
}
