import type { Connection } from "../reconstruct/types.js";
import { affinity } from "./affinity.js";
import { blackholedEndpoints } from "./blackholed-endpoints.js";
import { dns } from "./dns.js";
import { envDiscovery } from "./env-discovery.js";
import { fairness } from "./fairness.js";
import { noEndpoints } from "./no-endpoints.js";
import { nodePortRange } from "./nodeport-range.js";
import { postRemovalTraffic } from "./post-removal-traffic.js";
import { sanity } from "./sanity.js";
import { staleConntrack } from "./stale-conntrack.js";
import { staleRules } from "./stale-rules.js";
import type { Check, CheckContext, CheckId, ConnectionPass, Finding, Severity } from "./types.js";

export type { Check, CheckContext, CheckId, Finding, Severity } from "./types.js";
export { CHECK_METADATA, DEFAULT_CHECK_OPTIONS, SEVERITIES } from "./types.js";

/** Every check, in the order findings are reported. */
export const checks: readonly Check[] = [
  fairness,
  affinity,
  staleRules,
  postRemovalTraffic,
  staleConntrack,
  noEndpoints,
  blackholedEndpoints,
  dns,
  envDiscovery,
  nodePortRange,
  sanity,
] as Check[];

const SEVERITY_RANK: Record<Severity, number> = { error: 0, warning: 1, info: 2 };

/** Checks under way: feed every connection to `visit`, then collect the findings. */
export interface CheckRun {
  /** The verdicts some pass wants; undefined when one wants them all. */
  readonly verdicts: readonly Connection["verdict"][] | undefined;
  visit(connection: Connection): void;
  /**
   * Findings of every selected check, by severity then time: the passes' and those of the
   * checks that read the connections themselves (from `ctx.connections`, which must by then
   * hold every connection).
   */
  finish(): Finding[];
}

/** Start the checks (all, or the named ones): their passes are ready for connections. */
export function startChecks(ctx: CheckContext, only?: readonly CheckId[]): CheckRun {
  const selected = checks.filter((check) => only === undefined || only.includes(check.id));
  const passes = new Map<Check, ConnectionPass>();
  for (const check of selected) {
    const pass = check.pass?.(ctx);
    if (pass !== undefined) passes.set(check, pass);
  }
  const list = [...passes.values()];
  const wantsAll = list.filter((p) => p.verdicts === undefined);
  // Which passes see a verdict, worked out once per verdict rather than per connection.
  const byVerdict = new Map<Connection["verdict"], ConnectionPass[]>();
  const forVerdict = (verdict: Connection["verdict"]): ConnectionPass[] => {
    let targets = byVerdict.get(verdict);
    if (targets === undefined) {
      targets = list.filter((p) => p.verdicts === undefined || p.verdicts.includes(verdict));
      byVerdict.set(verdict, targets);
    }
    return targets;
  };
  return {
    verdicts: wantsAll.length > 0 ? undefined : [...new Set(list.flatMap((p) => p.verdicts ?? []))],
    visit(c) {
      const targets = forVerdict(c.verdict);
      for (let i = 0; i < targets.length; i++) targets[i]?.visit(c);
    },
    finish() {
      const out: Finding[] = [];
      for (const check of selected) {
        const pass = passes.get(check);
        out.push(...(pass === undefined ? check.run(ctx) : pass.finish()));
      }
      return out.sort(
        (a, b) =>
          SEVERITY_RANK[a.severity] - SEVERITY_RANK[b.severity] ||
          (a.from ?? 0) - (b.from ?? 0) ||
          a.check.localeCompare(b.check),
      );
    },
  };
}

/** Run the checks (all, or the named ones) on stored connections: one read for every pass. */
export function runChecks(ctx: CheckContext, only?: readonly CheckId[]): Finding[] {
  const run = startChecks(ctx, only);
  // No pass (or every pass wants no verdict): nothing to read.
  if (run.verdicts === undefined || run.verdicts.length > 0) {
    for (const c of ctx.connections(run.verdicts)) run.visit(c);
  }
  return run.finish();
}
