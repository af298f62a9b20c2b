import type { CheckContext, ConnectionPass, Finding } from "./types.js";
import { defineCheck, runPass } from "./types.js";
import { endpointText, GroupIndex, keepSmallest } from "./util.js";

type BlackholedFinding = Extract<Finding, { check: "blackholed-endpoints" }>;

interface Group {
  service: string;
  endpoint: string;
  total: number;
  unanswered: number;
  refused: number;
  ids: number[];
  nodes: Set<string>;
  from: number;
  to: number;
}

/** Connections this close to the end of the data may have been answered after the capture stopped. */
const TAIL_SECONDS = 1;

export const blackholedEndpoints = defineCheck({
  id: "blackholed-endpoints",
  title: "Blackholed endpoints",
  description:
    "Endpoints whose translated connections go unanswered (Zeek S0) or are refused with RST/ICMP unreachable.",
  run(ctx: CheckContext): BlackholedFinding[] {
    return runPass(ctx, pass(ctx));
  },
  pass,
});

function pass(ctx: CheckContext): ConnectionPass<BlackholedFinding> {
  const groups = new Map<string, Group>();
  const index = new GroupIndex<Group>();
  const end = ctx.range?.to ?? Number.POSITIVE_INFINITY;
  return {
    visit(c) {
      if (c.endpoint === null || c.service === null) return;
      if (c.start > end - TAIL_SECONDS) return;
      let g = index.find(c.service, c.endpoint.ip, c.endpoint.port);
      if (g === undefined) {
        const ep = endpointText(c.endpoint.ip, c.endpoint.port);
        g = {
          service: c.service,
          endpoint: ep,
          total: 0,
          unanswered: 0,
          refused: 0,
          ids: [],
          nodes: new Set(),
          from: Number.POSITIVE_INFINITY,
          to: Number.NEGATIVE_INFINITY,
        };
        groups.set(`${c.service}|${ep}`, g);
        index.add(c.service, c.endpoint.ip, c.endpoint.port, g);
      }
      g.total++;
      const bad = c.verdict === "blackholed" || c.verdict === "refused";
      if (c.verdict === "blackholed") g.unanswered++;
      if (c.verdict === "refused") g.refused++;
      if (bad) {
        keepSmallest(g.ids, c.id);
        if (c.node !== null) g.nodes.add(c.node);
        if (c.start < g.from) g.from = c.start;
        if (c.start > g.to) g.to = c.start;
      }
    },
    finish() {
      return report(groups);
    },
  };
}

function report(groups: Map<string, Group>): BlackholedFinding[] {
  const out: BlackholedFinding[] = [];
  for (const g of groups.values()) {
    const bad = g.unanswered + g.refused;
    // One lost answer is capture loss more often than a dead pod.
    if (bad < 2 || bad / g.total < 0.5) continue;
    const all = bad === g.total;
    out.push({
      check: "blackholed-endpoints",
      severity: all && bad >= 3 ? "error" : "warning",
      service: g.service,
      node: g.nodes.size === 1 ? ([...g.nodes][0] ?? null) : null,
      from: g.from,
      to: g.to,
      summary: `${bad} of ${g.total} connection(s) translated to ${g.endpoint} (${g.service}) were ${g.refused > 0 && g.unanswered === 0 ? "refused" : g.refused > 0 ? "unanswered or refused" : "never answered"}; check that pod's readiness and the route to it.`,
      evidence: {
        endpoint: g.endpoint,
        connections: g.total,
        unanswered: g.unanswered,
        refused: g.refused,
        connectionIds: g.ids,
      },
    });
  }
  return out;
}
