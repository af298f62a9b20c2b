import type { Connection } from "../reconstruct/types.js";
import { addressFamily } from "../util/ip.js";
import { findRemovals } from "./removals.js";
import type { CheckContext, ConnectionPass, Finding } from "./types.js";
import { defineCheck, runPass } from "./types.js";
import { endpointText, findService, keepSmallest } from "./util.js";

type StaleCtFinding = Extract<Finding, { check: "stale-conntrack" }>;

/** The group of a (service, node, endpoint), made on first use and widened to `t`. */
type GroupOf = (
  service: string,
  node: string | null,
  endpoint: string,
  removedAt: number | null,
  t: number,
  udp: boolean,
) => Group;

interface Group {
  service: string;
  node: string | null;
  endpoint: string;
  removedAt: number | null;
  ids: number[];
  count: number;
  records: string[];
  from: number;
  to: number;
  udp: boolean;
}

export const staleConntrack = defineCheck({
  id: "stale-conntrack",
  title: "Stale conntrack",
  description:
    "Flows that keep going to a removed endpoint because the conntrack entry outlived it, and conntrack records whose reply source is no current endpoint of the VIP.",
  run(ctx: CheckContext): StaleCtFinding[] {
    return runPass(ctx, pass(ctx));
  },
  pass,
});

function pass(ctx: CheckContext): ConnectionPass<StaleCtFinding> {
  const grace = ctx.options.graceSeconds;
  const groups = new Map<string, Group>();
  const group: GroupOf = (service, node, endpoint, removedAt, t, udp) => {
    const key = `${service}|${node ?? ""}|${endpoint}`;
    let g = groups.get(key);
    if (g === undefined) {
      g = {
        service,
        node,
        endpoint,
        removedAt,
        ids: [],
        count: 0,
        records: [],
        from: t,
        to: t,
        udp,
      };
      groups.set(key, g);
    }
    g.from = Math.min(g.from, t);
    g.to = Math.max(g.to, t);
    g.udp ||= udp;
    return g;
  };

  // Flows that outlived their endpoint.
  const removed = new Map<string, number>();
  for (const r of findRemovals(ctx)) {
    if (r.endpoint !== null) removed.set(`${r.service}|${r.endpoint}`, r.removedAt);
  }
  const visit = (c: Connection) => {
    if (c.service === null || c.endpoint === null) return;
    const ep = endpointText(c.endpoint.ip, c.endpoint.port);
    const at = removed.get(`${c.service}|${ep}`);
    if (at === undefined) return;
    // Outlived: still flowing after the grace period, or after the node's own rules had
    // already dropped the endpoint (kube-proxy deletes the entries right after that).
    const reprogrammed =
      c.node !== null &&
      ctx.rulesets.forNode(c.node, addressFamily(c.vip.ip)).some((rs) => {
        if (rs.takenAt <= at || rs.takenAt >= c.end) return false;
        const sp = findService(rs, c.service ?? "");
        return sp !== null && !sp.endpoints.some((e) => endpointText(e.ip, e.port) === ep);
      });
    const outlived = c.start <= at && (c.end > at + grace || reprogrammed);
    const reused = c.start > at && c.verdict === "unexpected-endpoint";
    if (!outlived && !reused) return;
    const g = group(c.service, c.node, ep, at, c.end, c.proto === "udp");
    g.count++;
    keepSmallest(g.ids, c.id);
  };
  // No endpoint was removed: no flow can have outlived one.
  return {
    ...(removed.size > 0 ? {} : { verdicts: [] }),
    visit,
    finish: () => finish(ctx, removed, group, groups),
  };
}

function finish(
  ctx: CheckContext,
  removed: Map<string, number>,
  group: GroupOf,
  groups: Map<string, Group>,
): StaleCtFinding[] {
  const grace = ctx.options.graceSeconds;

  // Conntrack records whose reply source is no endpoint of the VIP at dump time.
  for (const ct of ctx.conntrack) {
    // kube-proxy deletes UDP entries of removed endpoints; TCP entries end with their
    // connections (FIN, RST, timeout) and are not stale by themselves.
    if (ct.proto !== 17) continue;
    const service = ctx.services.vip(ct.proto, ct.orig.dstIp, ct.orig.dstPort);
    if (service === null) continue;
    const ep = endpointText(ct.reply.srcIp, ct.reply.srcPort);
    if (ct.reply.srcIp === ct.orig.dstIp && ct.reply.srcPort === ct.orig.dstPort) continue;
    const now = ctx.inventory.at(ct.takenAt);
    const before = ctx.inventory.at(ct.takenAt - grace);
    // The node's own rules at dump time are the best judge: kube-proxy deletes the entries of
    // an endpoint as soon as it drops it from the rules.
    const family = addressFamily(ct.orig.dstIp);
    const rules = ctx.rulesets.at(ct.node, ct.takenAt, family);
    const ruled =
      rules !== null && rules.takenAt <= ct.takenAt ? findService(rules, service) : null;
    let known: boolean;
    if (ruled !== null) {
      known = ruled.endpoints.some((e) => endpointText(e.ip, e.port) === ep);
    } else if (now !== null && before !== null) {
      const a = findService(now, service);
      const b = findService(before, service);
      if (a === null && b === null) known = false;
      else {
        known = [...(a?.endpoints ?? []), ...(b?.endpoints ?? [])].some(
          (e) => endpointText(e.ip, e.port) === ep,
        );
      }
    } else {
      const rs = ctx.rulesets.at(ct.node, ct.takenAt, family);
      const sp = rs === null ? null : findService(rs, service);
      if (sp === null) continue;
      known = sp.endpoints.some((e) => endpointText(e.ip, e.port) === ep);
    }
    if (known) continue;
    const g = group(
      service,
      ct.node,
      ep,
      removed.get(`${service}|${ep}`) ?? null,
      ct.takenAt,
      ct.proto === 17,
    );
    if (g.records.length < 10) {
      g.records.push(
        `${ct.node}@${ct.takenAt}: ${ct.orig.srcIp}:${ct.orig.srcPort} -> ${ct.orig.dstIp}:${ct.orig.dstPort} reply from ${ep}${ct.state ? ` ${ct.state}` : ""}`,
      );
    }
  }

  const out: StaleCtFinding[] = [];
  for (const g of groups.values()) {
    const flows = g.count > 0;
    out.push({
      check: "stale-conntrack",
      severity: flows ? "error" : "warning",
      service: g.service,
      node: g.node,
      from: g.from,
      to: g.to,
      summary: flows
        ? `${g.count} ${g.udp ? "UDP " : ""}flow(s) to ${g.service} kept going to removed endpoint ${g.endpoint}${g.node ? ` through ${g.node}` : ""}: the conntrack entry outlived the endpoint; kube-proxy should delete it (conntrack -D -p udp --orig-dst VIP --reply-src ${g.endpoint.replace(/:\d+$/, "")}).`
        : `conntrack on ${g.node ?? "a node"} still maps ${g.service} to ${g.endpoint}, which is no endpoint of it; flush the entry (conntrack -D --reply-src ${g.endpoint.replace(/:\d+$/, "")}).`,
      evidence: {
        endpoint: g.endpoint,
        removedAt: g.removedAt,
        ...(g.ids.length > 0 ? { connectionIds: g.ids } : {}),
        ...(g.records.length > 0 ? { conntrack: g.records } : {}),
      },
    });
  }
  return out;
}
