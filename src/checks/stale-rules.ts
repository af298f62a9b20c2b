import type { RuleSetView } from "../reconstruct/types.js";
import { afterRemoval, findRemovals, type Removal } from "./removals.js";
import type { CheckContext, Finding } from "./types.js";
import { defineCheck } from "./types.js";
import { endpointText, findService, serviceRuleLines } from "./util.js";

type StaleFinding = Extract<Finding, { check: "stale-rules" }>;

/**
 * Within the grace period a node may simply not have synced yet — unless another node's dump,
 * taken after the removal and no later than this one, already shows it gone.
 */
function peersCaughtUp(ctx: CheckContext, r: Removal, node: string, rs0: RuleSetView): boolean {
  const t = rs0.takenAt;
  if (t <= r.removedAt || (r.restoredAt !== null && t >= r.restoredAt)) return false;
  for (const other of ctx.rulesets.nodes()) {
    if (other === node) continue;
    // Of the same family: another family's dump never had an IPv4-only (or IPv6-only) Service.
    for (const rs of ctx.rulesets.forNode(other, rs0.family)) {
      if (rs.takenAt <= r.removedAt || rs.takenAt > t) continue;
      const sp = findService(rs, r.service);
      const gone =
        sp === null ||
        (r.endpoint !== null &&
          !sp.endpoints.some((e) => endpointText(e.ip, e.port) === r.endpoint));
      if (gone) return true;
    }
  }
  return false;
}

function removedStillPresent(ctx: CheckContext, out: StaleFinding[], done: Set<string>): void {
  const grace = ctx.options.graceSeconds;
  for (const r of findRemovals(ctx)) {
    for (const node of ctx.rulesets.nodes()) {
      const stale: RuleSetView[] = [];
      for (const rs of ctx.rulesets.forNode(node)) {
        if (!afterRemoval(r, rs.takenAt, grace) && !peersCaughtUp(ctx, r, node, rs)) {
          continue;
        }
        const sp = findService(rs, r.service);
        if (sp === null) continue;
        if (
          r.endpoint !== null &&
          !sp.endpoints.some((e) => endpointText(e.ip, e.port) === r.endpoint)
        ) {
          continue;
        }
        stale.push(rs);
      }
      const first = stale[0];
      const last = stale[stale.length - 1];
      if (first === undefined || last === undefined) continue;
      const sp = findService(last, r.service);
      done.add(`${node}|${r.service}`);
      const what = r.endpoint === null ? r.service : `endpoint ${r.endpoint} of ${r.service}`;
      out.push({
        check: "stale-rules",
        severity: "error",
        service: r.service,
        node,
        from: first.takenAt,
        to: last.takenAt,
        summary: `${node} still had rules for ${what} in ${stale.length} dump(s) up to ${(last.takenAt - r.removedAt).toFixed(1)}s after it was removed, while the control plane${r.source === "rules" ? " and other nodes" : ""} had dropped it; kube-proxy on ${node} is not syncing — check its logs and restart it.`,
        evidence: {
          kind: r.endpoint === null ? "removed-service" : "removed-endpoint",
          removedAt: r.removedAt,
          ...(r.endpoint === null ? {} : { endpoints: [r.endpoint] }),
          rules: sp === null ? [] : serviceRuleLines(last, sp),
          rulesetIds: stale.map((s) => s.id),
          removalSource: r.source,
        },
      });
    }
  }
}

function orphanChains(ctx: CheckContext, out: StaleFinding[]): void {
  const lasts = ctx.rulesets
    .nodes()
    .flatMap((node) => [ctx.rulesets.forNode(node, 4), ctx.rulesets.forNode(node, 6)])
    .map((list) => list[list.length - 1]);
  for (const last of lasts) {
    if (last === undefined || last.orphanChains.length === 0) continue;
    const node = last.node;
    out.push({
      check: "stale-rules",
      severity: "warning",
      service: null,
      node,
      from: last.takenAt,
      to: last.takenAt,
      summary: `${node}: ${last.orphanChains.length} kube-proxy chain(s) nothing jumps to (${last.orphanChains.slice(0, 3).join(", ")}${last.orphanChains.length > 3 ? ", …" : ""}); leftovers of a failed or partial sync.`,
      evidence: {
        kind: "orphan-chain",
        chains: last.orphanChains,
        rulesetIds: [last.id],
      },
    });
  }
}

/** Endpoints in a node's rules that no EndpointSlice listed then (nor a grace period before). */
function unlistedEndpoints(ctx: CheckContext, out: StaleFinding[], done: Set<string>): void {
  if (ctx.inventory.snapshots.length === 0) return;
  const grace = ctx.options.graceSeconds;
  const seen = new Map<string, StaleFinding>();
  for (const rs of ctx.rulesets.all) {
    const now = ctx.inventory.at(rs.takenAt);
    const before = ctx.inventory.at(rs.takenAt - grace);
    if (now === null || before === null) continue;
    for (const sp of rs.services) {
      if (done.has(`${rs.node}|${sp.key}`)) continue;
      const a = findService(now, sp.key);
      const b = findService(before, sp.key);
      if (a === null || b === null) continue;
      const listed = new Set<string>();
      for (const e of [...a.endpoints, ...b.endpoints]) listed.add(endpointText(e.ip, e.port));
      const extra = sp.endpoints
        .map((e) => endpointText(e.ip, e.port))
        .filter((e) => !listed.has(e));
      if (extra.length === 0) continue;
      const key = `${rs.node}|${sp.key}|${extra.join(",")}`;
      const prev = seen.get(key);
      if (prev !== undefined) {
        prev.to = rs.takenAt;
        continue;
      }
      const f: StaleFinding = {
        check: "stale-rules",
        severity: "warning",
        service: sp.key,
        node: rs.node,
        from: rs.takenAt,
        to: rs.takenAt,
        summary: `${rs.node}'s rules send ${sp.key} to ${extra.join(", ")}, which no EndpointSlice lists; traffic there will fail — check kube-proxy's sync on ${rs.node}.`,
        evidence: { kind: "unlisted-endpoint", endpoints: extra, rules: serviceRuleLines(rs, sp) },
      };
      seen.set(key, f);
      out.push(f);
    }
  }
}

/** Nodes whose rules disagree about a Service's endpoints at about the same time. */
function disagreement(ctx: CheckContext, out: StaleFinding[], done: Set<string>): void {
  const grace = ctx.options.graceSeconds;
  const nodes = ctx.rulesets.nodes();
  const reported = new Set<string>();
  for (const rs of ctx.rulesets.all) {
    for (const other of nodes) {
      if (other <= rs.node) continue;
      const peer = ctx.rulesets.at(other, rs.takenAt, rs.family);
      if (peer === null || Math.abs(peer.takenAt - rs.takenAt) > grace) continue;
      // A change made shortly before or between the two dumps may be half-way through its
      // rollout: only dumps of a settled state can disagree.
      const lo = Math.min(peer.takenAt, rs.takenAt) - grace;
      const hi = Math.max(peer.takenAt, rs.takenAt);
      if (ctx.inventory.snapshots.some((s) => s.takenAt > lo && s.takenAt <= hi)) continue;
      for (const sp of rs.services) {
        const q = findService(peer, sp.key);
        if (q === null) continue;
        if (done.has(`${rs.node}|${sp.key}`) || done.has(`${other}|${sp.key}`)) continue;
        const a = sp.endpoints.map((e) => endpointText(e.ip, e.port)).sort();
        const b = q.endpoints.map((e) => endpointText(e.ip, e.port)).sort();
        if (a.join(",") === b.join(",")) continue;
        const key = `${sp.key}|${rs.node}|${other}`;
        if (reported.has(key)) continue;
        reported.add(key);
        out.push({
          check: "stale-rules",
          severity: "warning",
          service: sp.key,
          node: null,
          from: Math.min(rs.takenAt, peer.takenAt),
          to: Math.max(rs.takenAt, peer.takenAt),
          summary: `${rs.node} and ${other} disagree about ${sp.key}'s endpoints (${a.join(", ") || "none"} vs ${b.join(", ") || "none"}); one of them has not synced.`,
          evidence: {
            kind: "node-disagreement",
            endpoints: [...new Set([...a, ...b])],
            nodes: { [rs.node]: a, [other]: b },
            rulesetIds: [rs.id, peer.id],
          },
        });
      }
    }
  }
}

export const staleRules = defineCheck({
  id: "stale-rules",
  title: "Stale rules",
  description:
    "Rules for removed Services or endpoints still on a node after the grace period, orphan chains, endpoints no EndpointSlice lists, nodes that disagree.",
  run(ctx) {
    const out: StaleFinding[] = [];
    const done = new Set<string>();
    removedStillPresent(ctx, out, done);
    unlistedEndpoints(ctx, out, done);
    disagreement(ctx, out, done);
    orphanChains(ctx, out);
    return out;
  },
});
