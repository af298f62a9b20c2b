import type { InventorySnapshot } from "../reconstruct/types.js";
import type { CheckContext, Finding } from "./types.js";
import { defineCheck, serviceName } from "./types.js";

type DnsFinding = Extract<Finding, { check: "dns" }>;
type Kind = DnsFinding["evidence"]["kind"];

interface ServiceFacts {
  clusterIPs: Set<string>;
  externalName: string | null;
}

const factsCache = new WeakMap<InventorySnapshot, Map<string, ServiceFacts>>();

function facts(snap: InventorySnapshot): Map<string, ServiceFacts> {
  let map = factsCache.get(snap);
  if (map !== undefined) return map;
  map = new Map();
  for (const name of snap.serviceNames)
    map.set(name, { clusterIPs: new Set(), externalName: null });
  for (const sp of snap.services) {
    const name = serviceName(sp.key);
    let f = map.get(name);
    if (f === undefined) map.set(name, (f = { clusterIPs: new Set(), externalName: null }));
    for (const ip of sp.clusterIPs) if (ip !== "None" && ip !== "") f.clusterIPs.add(ip);
    if (sp.externalName !== null) f.externalName = sp.externalName.replace(/\.$/, "").toLowerCase();
  }
  factsCache.set(snap, map);
  return map;
}

export const dns = defineCheck({
  id: "dns",
  title: "DNS disagreement",
  description:
    "Answers for *.svc names that disagree with the Service's ClusterIP or ExternalName, NXDOMAIN for existing Services, answers for deleted ones.",
  run(ctx: CheckContext): DnsFinding[] {
    if (ctx.inventory.snapshots.length === 0) return [];
    const domain = ctx.options.clusterDomain.toLowerCase().replace(/\.$/, "");
    const suffix = `.svc.${domain}`;
    const grace = ctx.options.graceSeconds;
    const first = ctx.inventory.snapshots[0]?.takenAt ?? 0;
    // When each Service first appears: an answer before that is not one for a deleted Service.
    const firstSeen = new Map<string, number>();
    for (const s of ctx.inventory.snapshots) {
      for (const n of facts(s).keys()) if (!firstSeen.has(n)) firstSeen.set(n, s.takenAt);
    }
    const groups = new Map<string, DnsFinding>();
    const report = (
      kind: Kind,
      svc: string,
      ts: number,
      qname: string,
      answers: string[],
      expected: string[],
      id: number,
      node: string,
      summary: string,
      severity: DnsFinding["severity"],
    ) => {
      const key = `${kind}|${svc}`;
      const g = groups.get(key);
      if (g !== undefined) {
        g.to = Math.max(g.to ?? ts, ts);
        if (g.evidence.dnsIds.length < 20) g.evidence.dnsIds.push(id);
        g.evidence["count"] = Number(g.evidence["count"] ?? 1) + 1;
        return;
      }
      groups.set(key, {
        check: "dns",
        severity,
        service: svc,
        node,
        from: ts,
        to: ts,
        summary,
        evidence: { kind, qname, answers, expected, dnsIds: [id], count: 1 },
      });
    };
    for (const d of ctx.dns) {
      if (!d.isResponse) continue;
      const q = d.qname.toLowerCase().replace(/\.$/, "");
      if (!q.endsWith(suffix)) continue;
      const parts = q.slice(0, -suffix.length).split(".");
      if (parts.length !== 2) continue; // pod or SRV names: <pod>.<svc>.<ns>, _port._proto.…
      const svc = `${parts[1]}/${parts[0]}`;
      if (d.ts < first - grace) continue;
      // Snapshots say what was there when they were taken; between two of them a Service may
      // have been created, deleted or recreated. Only what both sides agree on is a finding.
      const now = ctx.inventory.at(d.ts);
      const before = ctx.inventory.at(d.ts - grace);
      const next = ctx.inventory.after(d.ts);
      const a = now === null ? undefined : facts(now).get(svc);
      const b = before === null ? undefined : facts(before).get(svc);
      const later = next === null ? undefined : facts(next).get(svc);
      const gone = next !== null && later === undefined;
      const addrs = d.answers.filter((x) => x.type === "A" || x.type === "AAAA").map((x) => x.data);
      const cnames = d.answers
        .filter((x) => x.type === "CNAME")
        .map((x) => x.data.replace(/\.$/, "").toLowerCase());
      if (d.rcode === "NXDOMAIN") {
        // Deleted before the next snapshot: NXDOMAIN may already have been right.
        if (a !== undefined && b !== undefined && !gone) {
          report(
            "nxdomain-for-existing",
            svc,
            d.ts,
            d.qname,
            [],
            [...a.clusterIPs],
            d.id,
            d.node,
            `DNS answered NXDOMAIN for ${q} while Service ${svc} existed; check CoreDNS's kubernetes plugin and its watch.`,
            "warning",
          );
        }
        continue;
      }
      if (d.rcode !== "NOERROR" && d.rcode !== null) continue;
      if (a === undefined && b === undefined) {
        const existedBefore = (firstSeen.get(svc) ?? Number.POSITIVE_INFINITY) <= d.ts;
        // Back in the next snapshot: maybe created again before this answer.
        if (existedBefore && later === undefined && (addrs.length > 0 || cnames.length > 0)) {
          report(
            "answer-for-deleted",
            svc,
            d.ts,
            d.qname,
            [...addrs, ...cnames],
            [],
            d.id,
            d.node,
            `DNS still answered ${q} with ${[...addrs, ...cnames].join(", ")} after Service ${svc} was deleted; clients may cache a dead address (check CoreDNS cache TTL).`,
            "warning",
          );
        }
        continue;
      }
      // A Service recreated before the next snapshot may already have had its new ClusterIP.
      const expectedIPs = new Set([
        ...(a?.clusterIPs ?? []),
        ...(b?.clusterIPs ?? []),
        ...(later?.clusterIPs ?? []),
      ]);
      const extName = a?.externalName ?? b?.externalName ?? null;
      if (extName !== null) {
        if (cnames.length > 0 && !cnames.includes(extName)) {
          report(
            "wrong-cname",
            svc,
            d.ts,
            d.qname,
            cnames,
            [extName],
            d.id,
            d.node,
            `DNS answered ${q} with CNAME ${cnames.join(", ")} but ExternalName Service ${svc} says ${extName}.`,
            "warning",
          );
        }
        continue;
      }
      if (expectedIPs.size === 0) continue; // headless: answers are pod IPs
      const wrong = addrs.filter((x) => !expectedIPs.has(x));
      if (wrong.length > 0) {
        report(
          "wrong-address",
          svc,
          d.ts,
          d.qname,
          addrs,
          [...expectedIPs],
          d.id,
          d.node,
          `DNS answered ${q} with ${wrong.join(", ")} but Service ${svc}'s ClusterIP is ${[...expectedIPs].join(", ")}; clients reach the wrong place (stale DNS cache or a recreated Service).`,
          "error",
        );
      }
    }
    return [...groups.values()];
  },
});
