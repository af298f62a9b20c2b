import type { Removal } from "./removals.js";
import { findRemovals } from "./removals.js";
import type { CheckContext, ConnectionPass, Finding } from "./types.js";
import { defineCheck, runPass } from "./types.js";
import { endpointText, findService, keepSmallest } from "./util.js";

type PostRemovalFinding = Extract<Finding, { check: "post-removal-traffic" }>;

interface Group {
  removal: Removal;
  node: string;
  ids: number[];
  count: number;
  first: number;
  last: number;
}

export const postRemovalTraffic = defineCheck({
  id: "post-removal-traffic",
  title: "Traffic after removal",
  description:
    "Connections translated by a removed Service's rules or to a removed endpoint after its removal, with the programming latency per node.",
  run(ctx: CheckContext): PostRemovalFinding[] {
    return runPass(ctx, pass(ctx));
  },
  pass,
});

function pass(ctx: CheckContext): ConnectionPass<PostRemovalFinding> {
  const removals = findRemovals(ctx);
  // Nothing was removed: no connection can be late.
  if (removals.length === 0) return { verdicts: [], visit() {}, finish: () => [] };
  const byService = new Map<string, Removal[]>();
  for (const r of removals) {
    let list = byService.get(r.service);
    if (list === undefined) byService.set(r.service, (list = []));
    list.push(r);
  }
  const groups = new Map<string, Group>();
  return {
    visit(c) {
      if (c.service === null || c.endpoint === null || c.node === null) return;
      const list = byService.get(c.service);
      if (list === undefined) return;
      const ep = endpointText(c.endpoint.ip, c.endpoint.port);
      for (const r of list) {
        if (r.endpoint !== null && r.endpoint !== ep) continue;
        // A translation made after the removal (a connection that started before is stale
        // conntrack's business, not the rules').
        if (c.start <= r.removedAt || (r.restoredAt !== null && c.start >= r.restoredAt)) continue;
        const key = `${r.service}|${r.endpoint ?? ""}|${c.node}`;
        let g = groups.get(key);
        if (g === undefined) {
          g = { removal: r, node: c.node, ids: [], count: 0, first: c.start, last: c.start };
          groups.set(key, g);
        }
        g.count++;
        keepSmallest(g.ids, c.id);
        if (c.start < g.first) g.first = c.start;
        if (c.start > g.last) g.last = c.start;
      }
    },
    finish: () => report(ctx, groups),
  };
}

function report(ctx: CheckContext, groups: Map<string, Group>): PostRemovalFinding[] {
  const out: PostRemovalFinding[] = [];
  for (const g of groups.values()) {
    const r = g.removal;
    const latency = g.last - r.removedAt;
    // A dump taken after the removal that still has the rules makes it a stuck node, not
    // a slow one, however soon after the removal the traffic came.
    const stuck = ctx.rulesets.forNode(g.node).some((rs) => {
      if (rs.takenAt <= r.removedAt) return false;
      const sp = findService(rs, r.service);
      if (sp === null) return false;
      return (
        r.endpoint === null || sp.endpoints.some((e) => endpointText(e.ip, e.port) === r.endpoint)
      );
    });
    const late = stuck || latency > ctx.options.graceSeconds;
    const what = r.endpoint === null ? r.service : `removed endpoint ${r.endpoint} of ${r.service}`;
    out.push({
      check: "post-removal-traffic",
      severity: late ? "error" : "info",
      service: r.service,
      node: g.node,
      from: g.first,
      to: g.last,
      summary: late
        ? `${g.node} translated ${g.count} new connection(s) to ${what} up to ${latency.toFixed(1)}s after its removal; its kube-proxy did not remove the rules.`
        : `${g.node} took ${latency.toFixed(1)}s to stop translating to ${what} after its removal (${g.count} connection(s)): programming latency within the grace period.`,
      evidence: {
        removed: r.endpoint === null ? "service" : "endpoint",
        ...(r.endpoint === null ? {} : { endpoint: r.endpoint }),
        removedAt: r.removedAt,
        connections: g.count,
        lastTranslation: g.last,
        latencySeconds: Number(latency.toFixed(3)),
        connectionIds: g.ids,
      },
    });
  }
  return out;
}
