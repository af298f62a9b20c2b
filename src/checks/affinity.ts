import type { CheckContext, Finding } from "./types.js";
import { defineCheck } from "./types.js";
import { endpointText, findService } from "./util.js";

type AffinityFinding = Extract<Finding, { check: "affinity" }>;

interface ClientState {
  endpoint: string;
  lastUsed: number;
  connection: number;
}

interface Group {
  service: string;
  node: string;
  timeout: number;
  clients: Set<string>;
  violations: number;
  examples: AffinityFinding["evidence"]["examples"];
  from: number;
  to: number;
}

export const affinity = defineCheck({
  id: "affinity",
  title: "Session affinity",
  description:
    "A client of a ClientIP-affinity Service that reached two endpoints within the affinity timeout.",
  run(ctx: CheckContext): AffinityFinding[] {
    // Only Services with ClientIP affinity matter: most traces have none, skip the pass.
    const sources = [...ctx.rulesets.all, ...ctx.inventory.snapshots];
    if (!sources.some((src) => src.services.some((sp) => sp.affinityTimeout !== null))) return [];
    const state = new Map<string, ClientState>();
    const groups = new Map<string, Group>();
    for (const c of ctx.connections()) {
      if (c.endpoint === null || c.service === null || c.node === null) continue;
      const rs = ctx.rulesets.at(c.node, c.start);
      const inv = ctx.inventory.at(c.start);
      const sp = (rs && findService(rs, c.service)) ?? (inv && findService(inv, c.service));
      if (sp === null || sp.affinityTimeout === null) continue;
      // Affinity state lives in each node's `recent` table: judge per node.
      const gkey = `${c.service}|${c.node}`;
      let g = groups.get(gkey);
      if (g === undefined) {
        g = {
          service: c.service,
          node: c.node,
          timeout: sp.affinityTimeout,
          clients: new Set(),
          violations: 0,
          examples: [],
          from: c.start,
          to: c.start,
        };
        groups.set(gkey, g);
      }
      g.clients.add(c.client.ip);
      const ep = endpointText(c.endpoint.ip, c.endpoint.port);
      const skey = `${gkey}|${c.client.ip}`;
      const prev = state.get(skey);
      if (prev !== undefined && prev.endpoint !== ep && c.start - prev.lastUsed <= g.timeout) {
        g.violations++;
        g.to = c.start;
        if (g.examples.length < 5) {
          g.examples.push({
            client: c.client.ip,
            from: prev.endpoint,
            to: ep,
            connections: [prev.connection, c.id],
          });
        }
      }
      state.set(skey, {
        endpoint: ep,
        lastUsed: Math.max(c.end, prev?.endpoint === ep ? prev.lastUsed : 0),
        connection: c.id,
      });
    }
    const out: AffinityFinding[] = [];
    for (const g of groups.values()) {
      if (g.violations === 0) continue;
      out.push({
        check: "affinity",
        severity: "error",
        service: g.service,
        node: g.node,
        from: g.from,
        to: g.to,
        summary: `${g.service} on ${g.node}: ${g.violations} connection(s) from a client went to a different endpoint within the ${g.timeout}s ClientIP affinity timeout; check the -m recent rules and whether the affinity state was flushed.`,
        evidence: {
          clients: g.clients.size,
          violations: g.violations,
          timeout: g.timeout,
          examples: g.examples,
        },
      });
    }
    return out;
  },
});
