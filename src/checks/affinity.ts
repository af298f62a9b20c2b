import type { Connection } from "../reconstruct/types.js";
import { addressFamily } from "../util/ip.js";
import type { CheckContext, ConnectionPass, Finding } from "./types.js";
import { defineCheck, runPass } from "./types.js";
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
  /** The group's connections, in the order they come; put in start order at the end. */
  seen: Seen[];
}

/** What affinity needs of a connection (kept for affinity Services only). */
interface Seen {
  id: number;
  client: string;
  endpoint: string;
  start: number;
  end: number;
}

export const affinity = defineCheck({
  id: "affinity",
  title: "Session affinity",
  description:
    "A client of a ClientIP-affinity Service that reached two endpoints within the affinity timeout.",
  run(ctx: CheckContext): AffinityFinding[] {
    return runPass(ctx, pass(ctx));
  },
  pass,
});

/**
 * Affinity is about the order of a client's connections, and a pass sees them in any order:
 * the connections of ClientIP-affinity Services are kept (a few numbers and shared strings
 * each) and put in start order at the end. Most traces have no such Service: no pass at all.
 */
function pass(ctx: CheckContext): ConnectionPass<AffinityFinding> {
  const sources = [...ctx.rulesets.all, ...ctx.inventory.snapshots];
  if (!sources.some((src) => src.services.some((sp) => sp.affinityTimeout !== null))) {
    return { verdicts: [], visit() {}, finish: () => [] };
  }
  const groups = new Map<string, Group>();
  const visit = (c: Connection) => {
    if (c.endpoint === null || c.service === null || c.node === null) return;
    const rs = ctx.rulesets.at(c.node, c.start, addressFamily(c.vip.ip));
    const inv = ctx.inventory.at(c.start);
    const sp = (rs && findService(rs, c.service)) ?? (inv && findService(inv, c.service));
    if (sp === null || sp.affinityTimeout === null) return;
    // Affinity state lives in each node's `recent` table: judge per node.
    const gkey = `${c.service}|${c.node}`;
    let g = groups.get(gkey);
    if (g === undefined) {
      g = { service: c.service, node: c.node, timeout: sp.affinityTimeout, seen: [] };
      groups.set(gkey, g);
    }
    g.seen.push({
      id: c.id,
      client: c.client.ip,
      endpoint: endpointText(c.endpoint.ip, c.endpoint.port),
      start: c.start,
      end: c.end,
    });
  };
  return { visit, finish: () => [...groups.values()].flatMap((g) => judgeGroup(g)) };
}

function judgeGroup(g: Group): AffinityFinding[] {
  g.seen.sort((a, b) => a.start - b.start || a.id - b.id);
  const state = new Map<string, ClientState>();
  const clients = new Set<string>();
  const examples: AffinityFinding["evidence"]["examples"] = [];
  let violations = 0;
  let from = Number.POSITIVE_INFINITY;
  let to = Number.NEGATIVE_INFINITY;
  for (const c of g.seen) {
    clients.add(c.client);
    from = Math.min(from, c.start);
    const prev = state.get(c.client);
    if (
      prev !== undefined &&
      prev.endpoint !== c.endpoint &&
      c.start - prev.lastUsed <= g.timeout
    ) {
      violations++;
      to = c.start;
      if (examples.length < 5) {
        examples.push({
          client: c.client,
          from: prev.endpoint,
          to: c.endpoint,
          connections: [prev.connection, c.id],
        });
      }
    }
    state.set(c.client, {
      endpoint: c.endpoint,
      lastUsed: Math.max(c.end, prev?.endpoint === c.endpoint ? prev.lastUsed : 0),
      connection: c.id,
    });
  }
  if (violations === 0) return [];
  return [
    {
      check: "affinity",
      severity: "error",
      service: g.service,
      node: g.node,
      from,
      to,
      summary: `${g.service} on ${g.node}: ${violations} connection(s) from a client went to a different endpoint within the ${g.timeout}s ClientIP affinity timeout; check the -m recent rules and whether the affinity state was flushed.`,
      evidence: {
        clients: clients.size,
        violations,
        timeout: g.timeout,
        examples,
      },
    },
  ];
}
