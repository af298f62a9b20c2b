import type { CheckContext, ConnectionPass, Finding } from "./types.js";
import { defineCheck, runPass } from "./types.js";
import { findService, keepSmallest } from "./util.js";

type NoEndpointsFinding = Extract<Finding, { check: "no-endpoints" }>;

interface Group {
  service: string;
  node: string | null;
  count: number;
  answered: number;
  verdicts: Record<string, number>;
  ids: number[];
  from: number;
  to: number;
}

export const noEndpoints = defineCheck({
  id: "no-endpoints",
  title: "Traffic to Services without endpoints",
  description:
    "Connections the rules reject or drop, and whether the clients saw the RST or ICMP unreachable the rules imply.",
  run(ctx: CheckContext): NoEndpointsFinding[] {
    return runPass(ctx, pass(ctx));
  },
  pass,
});

function pass(ctx: CheckContext): ConnectionPass<NoEndpointsFinding> {
  const groups = new Map<string, Group>();
  return {
    verdicts: ["rejected", "dropped"],
    visit(c) {
      if (c.service === null) return;
      const key = `${c.service}|${c.node ?? ""}`;
      let g = groups.get(key);
      if (g === undefined) {
        g = {
          service: c.service,
          node: c.node,
          count: 0,
          answered: 0,
          verdicts: {},
          ids: [],
          from: c.start,
          to: c.start,
        };
        groups.set(key, g);
      }
      g.count++;
      if (c.refusal !== null) g.answered++;
      g.verdicts[c.verdict] = (g.verdicts[c.verdict] ?? 0) + 1;
      keepSmallest(g.ids, c.id);
      if (c.start < g.from) g.from = c.start;
      if (c.start > g.to) g.to = c.start;
    },
    finish() {
      return report(ctx, groups);
    },
  };
}

function report(ctx: CheckContext, groups: Map<string, Group>): NoEndpointsFinding[] {
  const out: NoEndpointsFinding[] = [];
  for (const g of groups.values()) {
    // The EndpointSlices as they were when the first such connection came.
    const inv = ctx.inventory.at(g.from);
    const sp = inv === null ? null : findService(inv, g.service);
    const ready = sp?.endpoints.filter((e) => e.ready) ?? [];
    const listedEndpoints = ready.length > 0;
    // externalTrafficPolicy: Local and every ready endpoint runs on another node: the node drops
    // external traffic by design (load balancers steer by the health check node port).
    const localPolicyElsewhere =
      sp?.externalTrafficPolicy === "Local" &&
      ready.length > 0 &&
      g.node !== null &&
      ready.every((e) => e.node !== null && e.node !== g.node);
    const rejected = g.verdicts["rejected"] ?? 0;
    const silent = rejected - Math.min(rejected, g.answered);
    let summary = `${g.count} connection(s) to ${g.service}${g.node ? ` on ${g.node}` : ""} were ${rejected > 0 ? "rejected" : "dropped"} because the rules give it no endpoints`;
    summary += localPolicyElsewhere
      ? ": externalTrafficPolicy is Local and none of its ready endpoints runs on this node, so dropping is by design — send external traffic only to nodes that pass the health check node port."
      : listedEndpoints
        ? ", although its EndpointSlices list ready endpoints: kube-proxy has not caught up."
        : silent > 0
          ? `; ${silent} client(s) got no RST/ICMP for the REJECT — check for a filter in between.`
          : "; give it ready endpoints or stop the clients.";
    out.push({
      check: "no-endpoints",
      severity: localPolicyElsewhere ? "info" : listedEndpoints ? "error" : "warning",
      service: g.service,
      node: g.node,
      from: g.from,
      to: g.to,
      summary,
      evidence: {
        connections: g.count,
        answered: g.answered,
        verdicts: g.verdicts,
        connectionIds: g.ids,
        localPolicyElsewhere: localPolicyElsewhere,
      },
    });
  }
  return out;
}
