import type { DnsZone } from "./dns-server.js";
import { type DnsFaults, type Scenario, serviceDnsName, serviceKey } from "./scenario.js";
import type { ClusterState } from "./state.js";

/*
 * What the lab's cluster DNS says, as CoreDNS's kubernetes plugin would from the API server:
 * one A record per existing Service (<name>.<namespace>.svc.cluster.local → its ClusterIP),
 * NXDOMAIN for everything else — then bent by the scenario's DNS faults. The runner rewrites
 * the zone at every Service change; `previous` is the zone served until then (what a stale
 * cache or a stuck watch would keep).
 */

export function clusterDnsZone(
  scn: Scenario,
  state: ClusterState,
  faults: DnsFaults | null,
  previous: DnsZone | null,
): DnsZone {
  const records: DnsZone["records"] = {};
  const existing = new Set<string>();
  for (const svc of scn.services) {
    const key = serviceKey(svc);
    if (!state.services.has(key)) continue;
    const name = serviceDnsName(svc);
    existing.add(name);
    if (faults?.nxdomain.includes(key)) continue;
    const wrong = faults?.wrongAddress.find((w) => w.service === key);
    records[name] = { a: [wrong?.ip ?? svc.clusterIP] };
  }
  if (faults?.staleAnswers && previous !== null) {
    // A deleted Service's record outlives it (a watch that missed the deletion).
    for (const [name, record] of Object.entries(previous.records)) {
      if (!existing.has(name) && records[name] === undefined) records[name] = record;
    }
  }
  return { ttl: scn.dns?.ttl ?? 5, records };
}

/** The Service key a cluster DNS name is about ("ns/name"), or null for other names. */
export function serviceOfDnsName(name: string, domain: string): string | null {
  const suffix = `.svc.${domain.toLowerCase().replace(/\.$/, "")}`;
  const q = name.toLowerCase().replace(/\.$/, "");
  if (!q.endsWith(suffix)) return null;
  const parts = q.slice(0, -suffix.length).split(".");
  if (parts.length !== 2) return null;
  return `${parts[1]}/${parts[0]}`;
}
