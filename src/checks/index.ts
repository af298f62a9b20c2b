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

/** Run the checks (all, or the named ones) and order findings by severity, then time. */
export function runChecks(ctx: CheckContext, only?: readonly CheckId[]): Finding[] {
  const selected = checks.filter((check) => only === undefined || only.includes(check.id));
  const passes = new Map<Check, ConnectionPass>();
  for (const check of selected) {
    const pass = check.pass?.(ctx);
    if (pass !== undefined) passes.set(check, pass);
  }
  sharedPass(ctx, [...passes.values()]);
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
}

/** One read of the connections for every pass, each seeing only the verdicts it asked for. */
function sharedPass(ctx: CheckContext, passes: readonly ConnectionPass[]): void {
  if (passes.length === 0) return;
  const filters = passes.map((p) =>
    p.verdicts === undefined ? null : new Set<string>(p.verdicts),
  );
  const union = filters.includes(null)
    ? undefined
    : [...new Set(passes.flatMap((p) => p.verdicts ?? []))];
  for (const c of ctx.connections(union)) {
    for (let i = 0; i < passes.length; i++) {
      const filter = filters[i];
      if (filter === undefined || filter === null || filter.has(c.verdict)) passes[i]?.visit(c);
    }
  }
}
