import { type Command, Option } from "commander";
import { CHECK_METADATA, SEVERITIES } from "../../checks/types.js";
import { hasAnalysis, listFindings, type StoredFinding } from "../../store/analysis-schema.js";
import { openDb } from "../../store/db.js";
import { UsageError } from "../../util/errors.js";
import { formatTimeISO } from "../../util/time.js";
import { EXIT_FAIL_ON, ExitRequest } from "../exit.js";
import { failOnHit } from "./analyze.js";

interface FindingsOptions {
  db: string;
  check?: string;
  severity?: string;
  json?: boolean;
  failOn?: "error" | "warning";
}

/** Two lines a person reads: severity, check, service, node, time; then the summary. */
export function formatFindingHuman(f: StoredFinding): string {
  const when = f.from === null ? "" : ` ${formatTimeISO(f.from)}`;
  const head = `${f.severity.toUpperCase().padEnd(7)} ${f.check}${f.service ? ` ${f.service}` : ""}${f.node ? ` @${f.node}` : ""}${when}`;
  return `${head}\n        ${f.summary}`;
}

export function registerFindings(program: Command): void {
  program
    .command("findings")
    .description(
      "list what analyze found: unfair balancing, stale rules and conntrack, rejected or blackholed traffic, …",
    )
    .option("--db <file>", "database", "svctrace.db")
    .addOption(new Option("--check <id>", "only this check").choices(Object.keys(CHECK_METADATA)))
    .addOption(new Option("--severity <severity>", "only this severity").choices([...SEVERITIES]))
    .option("--json", "one JSON object per line")
    .addOption(
      new Option("--fail-on <severity>", "exit 3 when a listed finding is this severe").choices([
        "error",
        "warning",
      ]),
    )
    .action((opts: FindingsOptions) => {
      const db = openDb(opts.db, { readonly: true });
      let findings: ReturnType<typeof listFindings>;
      try {
        if (!hasAnalysis(db))
          throw new UsageError(
            `${opts.db} has not been analyzed yet: run svctrace analyze --db ${opts.db}`,
          );
        findings = listFindings(db, {
          ...(opts.check === undefined ? {} : { check: opts.check }),
          ...(opts.severity === undefined ? {} : { severity: opts.severity }),
        });
      } finally {
        db.close();
      }
      const out: string[] = [];
      for (const f of findings) {
        if (opts.json) {
          out.push(
            JSON.stringify({
              check: f.check,
              severity: f.severity,
              service: f.service,
              node: f.node,
              from: f.from,
              to: f.to,
              summary: f.summary,
              evidence: f.evidence,
            }),
          );
        } else {
          out.push(formatFindingHuman(f));
        }
      }
      if (!opts.json && findings.length === 0) out.push("no findings");
      if (out.length > 0) process.stdout.write(`${out.join("\n")}\n`);
      const counts = { error: 0, warning: 0 };
      for (const f of findings)
        if (f.severity === "error" || f.severity === "warning") counts[f.severity]++;
      if (failOnHit(opts.failOn, counts)) throw new ExitRequest(EXIT_FAIL_ON);
    });
}
