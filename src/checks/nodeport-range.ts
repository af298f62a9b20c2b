import type { CheckContext, Finding } from "./types.js";
import { defineCheck } from "./types.js";

type NodePortFinding = Extract<Finding, { check: "nodeport-range" }>;

export const nodePortRange = defineCheck({
  id: "nodeport-range",
  title: "NodePort range",
  description: "NodePorts outside the configured service-node-port-range (default 30000-32767).",
  run(ctx: CheckContext): NodePortFinding[] {
    const [lo, hi] = ctx.options.nodePortRange;
    const seen = new Map<string, NodePortFinding>();
    const sources = [
      ...ctx.rulesets.all.map((rs) => ({
        node: rs.node as string | null,
        t: rs.takenAt,
        services: rs.services,
      })),
      ...ctx.inventory.snapshots.map((s) => ({ node: null, t: s.takenAt, services: s.services })),
    ];
    for (const src of sources) {
      for (const sp of src.services) {
        if (sp.nodePort === null || (sp.nodePort >= lo && sp.nodePort <= hi)) continue;
        const key = `${sp.key}|${sp.nodePort}`;
        const prev = seen.get(key);
        if (prev !== undefined) {
          prev.from = Math.min(prev.from ?? src.t, src.t);
          prev.to = Math.max(prev.to ?? src.t, src.t);
          continue;
        }
        seen.set(key, {
          check: "nodeport-range",
          severity: "warning",
          service: sp.key,
          node: src.node,
          from: src.t,
          to: src.t,
          summary: `${sp.key} uses NodePort ${sp.nodePort}, outside the service-node-port-range ${lo}-${hi}; it may collide with host services (set --nodeport-range if your cluster uses another range).`,
          evidence: { nodePort: sp.nodePort, range: [lo, hi] },
        });
      }
    }
    return [...seen.values()];
  },
});
