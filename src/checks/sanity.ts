import type { Connection, ServicePortView } from "../reconstruct/types.js";
import { addressFamily } from "../util/ip.js";
import type { CheckContext, ConnectionPass, Finding } from "./types.js";
import { defineCheck, runPass } from "./types.js";
import { findService, keepSmallest } from "./util.js";

const WIRE_VERDICTS = ["consistent", "blackholed", "refused", "vip-inferred", "unjudged"] as const;

type SanityFinding = Extract<Finding, { check: "sanity" }>;

function duplicateVips(ctx: CheckContext, out: SanityFinding[]): void {
  const seen = new Set<string>();
  const sources = [
    ...ctx.rulesets.all.map((rs) => ({
      node: rs.node as string | null,
      t: rs.takenAt,
      services: rs.services,
    })),
    ...ctx.inventory.snapshots.map((s) => ({ node: null, t: s.takenAt, services: s.services })),
  ];
  for (const src of sources) {
    const owners = new Map<string, Set<string>>();
    const add = (vip: string, sp: ServicePortView) => {
      let set = owners.get(vip);
      if (set === undefined) owners.set(vip, (set = new Set()));
      set.add(sp.key);
    };
    for (const sp of src.services) {
      for (const ip of [...sp.clusterIPs, ...sp.externalIPs, ...sp.loadBalancerIPs]) {
        if (ip === "None" || ip === "") continue;
        add(`${sp.proto} ${ip.includes(":") ? `[${ip}]` : ip}:${sp.port}`, sp);
      }
      if (sp.nodePort !== null) add(`${sp.proto} NodePort ${sp.nodePort}`, sp);
    }
    for (const [vip, keys] of owners) {
      if (keys.size < 2) continue;
      const services = [...keys].sort();
      const id = `${vip}|${services.join(",")}`;
      if (seen.has(id)) continue;
      seen.add(id);
      out.push({
        check: "sanity",
        severity: "error",
        service: null,
        node: src.node,
        from: src.t,
        to: src.t,
        summary: `${vip} belongs to ${services.length} Services (${services.join(", ")}); only the first rule wins, the others are unreachable there.`,
        evidence: { kind: "duplicate-vip", vip, services },
      });
    }
  }
}

/**
 * kube-proxy always marks traffic to NodePorts, external and LoadBalancer IPs for masquerade
 * under externalTrafficPolicy Cluster: without it the reply goes straight back from the other
 * node and the client drops it.
 */
function missingMasquerade(ctx: CheckContext): ConnectionPass<SanityFinding> {
  const found = new Map<string, SanityFinding>();
  for (const rs of ctx.rulesets.all) {
    for (const sp of rs.services) {
      const external =
        sp.nodePort !== null || sp.externalIPs.length > 0 || sp.loadBalancerIPs.length > 0;
      if (!external || sp.masquerades !== false || sp.externalTrafficPolicy === "Local") continue;
      const key = `${rs.node}|${sp.key}`;
      const prev = found.get(key);
      if (prev !== undefined) {
        prev.to = rs.takenAt;
        continue;
      }
      const f: SanityFinding = {
        check: "sanity",
        severity: "error",
        service: sp.key,
        node: rs.node,
        from: rs.takenAt,
        to: rs.takenAt,
        summary: `${rs.node}'s rules for ${sp.key} (external traffic policy Cluster) never jump to KUBE-MARK-MASQ, so traffic from outside is forwarded without SNAT and replies bypass the node; kube-proxy always adds that masquerade.`,
        evidence: { kind: "missing-masquerade", connectionIds: [] },
      };
      found.set(key, f);
    }
  }
  // On the wire: external clients through a NodePort/external VIP forwarded to another node
  // without SNAT (no NodePorts: no such traffic, skip the pass).
  const sources = [...ctx.rulesets.all, ...ctx.inventory.snapshots];
  const nodePorts = sources.some((src) => src.services.some((sp) => sp.nodePort !== null));
  const visit = (c: Connection) => {
    if (c.service === null || c.node === null || c.endpoint === null || c.snat !== null) return;
    if (c.hook !== "prerouting" || ctx.services.nodeOfAddress(c.client.ip) !== null) return;
    if (ctx.services.nodeOfAddress(c.vip.ip) === null) return; // NodePort only
    const rs =
      c.rulesetId === null ? null : ctx.rulesets.at(c.node, c.start, addressFamily(c.vip.ip));
    const sp = rs === null ? null : findService(rs, c.service);
    if (sp?.externalTrafficPolicy === "Local") return;
    const key = `${c.node}|${c.service}`;
    let f = found.get(key);
    if (f === undefined) {
      f = {
        check: "sanity",
        severity: "error",
        service: c.service,
        node: c.node,
        from: c.start,
        to: c.start,
        summary: `NodePort connections to ${c.service} through ${c.node} reached the endpoint without SNAT (externalTrafficPolicy Cluster); kube-proxy always masquerades them — check KUBE-MARK-MASQ and KUBE-POSTROUTING on ${c.node}.`,
        evidence: { kind: "missing-masquerade", connectionIds: [] },
      };
      found.set(key, f);
    }
    const ids = f.evidence.connectionIds ?? [];
    keepSmallest(ids, c.id);
    f.evidence.connectionIds = ids;
    f.from = Math.min(f.from ?? c.start, c.start);
    f.to = Math.max(f.to ?? c.start, c.start);
  };
  return {
    verdicts: nodePorts ? WIRE_VERDICTS : [],
    visit,
    finish: () => [...found.values()],
  };
}

export const sanity = defineCheck({
  id: "sanity",
  title: "Static sanity",
  description:
    "Duplicate VIPs across Services; masquerade missing where kube-proxy always adds it.",
  run(ctx) {
    return runPass(ctx, pass(ctx));
  },
  pass,
});

function pass(ctx: CheckContext): ConnectionPass<SanityFinding> {
  const masquerade = missingMasquerade(ctx);
  return {
    ...masquerade,
    finish() {
      const out: SanityFinding[] = [];
      duplicateVips(ctx, out);
      out.push(...masquerade.finish());
      return out;
    },
  };
}
