import type { CheckContext, Finding } from "./types.js";
import { defineCheck } from "./types.js";
import { findService } from "./util.js";

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
  listedEndpoints: boolean;
}

export const noEndpoints = defineCheck({
  id: "no-endpoints",
  title: "Traffic to Services without endpoints",
  description:
    "Connections the rules reject or drop, and whether the clients saw the RST or ICMP unreachable the rules imply.",
  run(ctx: CheckContext): NoEndpointsFinding[] {
    const groups = new Map<string, Group>();
    for (const c of ctx.connections(["rejected", "dropped"])) {
      if (c.service === null) continue;
      const key = `${c.service}|${c.node ?? ""}`;
      let g = groups.get(key);
      if (g === undefined) {
        const inv = ctx.inventory.at(c.start);
        const sp = inv === null ? null : findService(inv, c.service);
        g = {
          service: c.service,
          node: c.node,
          count: 0,
          answered: 0,
          verdicts: {},
          ids: [],
          from: c.start,
          to: c.start,
          listedEndpoints: sp?.endpoints.some((e) => e.ready) ?? false,
        };
        groups.set(key, g);
      }
      g.count++;
      if (c.refusal !== null) g.answered++;
      g.verdicts[c.verdict] = (g.verdicts[c.verdict] ?? 0) + 1;
      if (g.ids.length < 20) g.ids.push(c.id);
      g.to = Math.max(g.to, c.start);
    }
    const out: NoEndpointsFinding[] = [];
    for (const g of groups.values()) {
      const rejected = g.verdicts["rejected"] ?? 0;
      const silent = rejected - Math.min(rejected, g.answered);
      let summary = `${g.count} connection(s) to ${g.service}${g.node ? ` on ${g.node}` : ""} were ${rejected > 0 ? "rejected" : "dropped"} because the rules give it no endpoints`;
      summary += g.listedEndpoints
        ? ", although its EndpointSlices list ready endpoints: kube-proxy has not caught up."
        : silent > 0
          ? `; ${silent} client(s) got no RST/ICMP for the REJECT — check for a filter in between.`
          : "; give it ready endpoints or stop the clients.";
      out.push({
        check: "no-endpoints",
        severity: g.listedEndpoints ? "error" : "warning",
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
        },
      });
    }
    return out;
  },
});
