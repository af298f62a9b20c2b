import { serviceOfDnsName } from "./cluster-dns.js";
import { type Scenario, serviceKey } from "./scenario.js";
import type { ClusterState } from "./state.js";
import type {
  ExpectedFile,
  ExpectedFinding,
  LabEvent,
  TruthConnection,
  TruthFile,
  TruthLookup,
} from "./truth.js";

/*
 * What an analysis must find in a lab bundle, derived from what the lab did: which state each
 * node's rules held when (the timeline of loads), the injected faults, and the connections'
 * ground truth. The scenario may add findings of its own (`expect.findings`).
 */

/** Per node: every rule load, in order, with the cluster state it was generated from. */
export type LoadedTimeline = Map<string, { since: number; state: ClusterState }[]>;

function stateAt(loaded: LoadedTimeline, node: string, time: number): ClusterState | null {
  const timeline = loaded.get(node) ?? [];
  let found = timeline[0]?.state ?? null;
  for (const entry of timeline) if (entry.since <= time) found = entry.state;
  return found;
}

function splitService(service: string): { key: string; port: string } {
  const colon = service.lastIndexOf(":");
  return { key: service.slice(0, colon), port: service.slice(colon + 1) };
}

/**
 * The verdict a correct analysis gives a connection, judged like DESIGN.md says: against the
 * rules in force on its node at its start.
 */
export function verdictFor(c: TruthConnection, scn: Scenario, loaded: LoadedTimeline): string {
  const state = stateAt(loaded, c.node, c.start);
  const key = splitService(c.service).key;
  const pods = state?.services.get(key);
  if (pods === undefined) return "untranslated";
  if (pods.length === 0) return "rejected";
  // Traffic policy Local with no endpoint on this node: kube-proxy DROPs (filter table). Pod
  // clients are exempt for external destinations ("pod traffic for … external destinations").
  const svc = scn.services.find((s) => serviceKey(s) === key);
  const fromPod = scn.clients.find((x) => x.name === c.clientName)?.node != null;
  const local = scn.pods.filter((p) => pods.includes(p.name) && p.node === c.node);
  const policy =
    c.via === "clusterIP"
      ? svc?.internalTrafficPolicy
      : fromPod
        ? "Cluster"
        : svc?.externalTrafficPolicy;
  if (policy === "Local" && local.length === 0) return "dropped";
  // Refused by the endpoint itself (RST, or ICMP port unreachable for UDP): translated, and the
  // endpoint said no — the blackholed-endpoints check's business.
  if (!c.answered) return c.error === "ECONNREFUSED" ? "refused" : "blackholed";
  const ips = new Set(scn.pods.filter((p) => pods.includes(p.name)).map((p) => p.ip));
  const ip = (c.endpoint ?? "").split(":")[0] ?? "";
  return ips.has(ip) ? "consistent" : "unexpected-endpoint";
}

function portLabels(scn: Scenario, key: string, protocol?: "TCP" | "UDP"): string[] {
  const svc = scn.services.find((s) => serviceKey(s) === key);
  if (!svc) return [];
  return svc.ports
    .filter((p) => protocol === undefined || p.protocol === protocol)
    .map((p) => `${key}:${p.name === "" ? String(p.port) : p.name}`);
}

function removedBy(c: TruthConnection, ev: LabEvent): boolean {
  if (ev.service === null || splitService(c.service).key !== ev.service) return false;
  if (ev.kind === "deleteService") return true;
  return ev.kind === "removeEndpoint" && c.endpointPod === ev.pod;
}

/**
 * The `dns` check's default `--grace`: an answer is judged against the Services as they were
 * both at its time and this long before, so a change has this long to reach the DNS server.
 */
export const DNS_CHECK_GRACE_SECONDS = 5;
/** Slack around the grace window: the capture's time of an answer is not the client's. */
const DNS_MARGIN_SECONDS = 1;

/** When each Service existed, from the scenario (absent or not at the start) and the events. */
export function serviceLifetimes(
  scn: Scenario,
  events: readonly LabEvent[],
): Map<string, { from: number; to: number }[]> {
  const out = new Map<string, { from: number; to: number }[]>();
  for (const svc of scn.services) {
    out.set(serviceKey(svc), svc.absent ? [] : [{ from: -Infinity, to: Infinity }]);
  }
  for (const ev of [...events].sort((a, b) => a.time - b.time)) {
    if (ev.service === null) continue;
    const list = out.get(ev.service) ?? [];
    out.set(ev.service, list);
    const open = list.find((l) => l.to === Infinity);
    if (ev.kind === "createService" && open === undefined)
      list.push({ from: ev.time, to: Infinity });
    if (ev.kind === "deleteService" && open !== undefined) open.to = ev.time;
  }
  return out;
}

/**
 * The dns findings an analysis must report for these lookups: an answer for a Service deleted
 * more than the grace before, NXDOMAIN for a Service that existed throughout the grace window,
 * an address that is not the ClusterIP of a Service that existed throughout it. Lookups close to
 * a change are left out (the check forgives them, rightly).
 */
export function dnsFindings(
  scn: Scenario,
  lookups: readonly TruthLookup[],
  events: readonly LabEvent[],
): { findings: ExpectedFinding[]; notes: string[] } {
  const findings: ExpectedFinding[] = [];
  const notes: string[] = [];
  if (scn.dns === null) return { findings, notes };
  const lifetimes = serviceLifetimes(scn, events);
  const seen = new Set<string>();
  const grace = DNS_CHECK_GRACE_SECONDS + DNS_MARGIN_SECONDS;
  const add = (service: string, severity: ExpectedFinding["severity"], why: string): void => {
    if (seen.has(service)) return;
    seen.add(service);
    findings.push({ check: "dns", severity, service, node: null, why });
  };
  const faults = scn.faults.dns;
  const explained = new Set<string>();
  for (const q of lookups) {
    if (!q.answered || q.rcode === null) continue;
    const key = serviceOfDnsName(q.name, scn.dns.domain);
    const life = key === null ? undefined : lifetimes.get(key);
    if (key === null || life === undefined) continue;
    const from = q.start - grace;
    const to = q.end + DNS_MARGIN_SECONDS;
    const throughout = life.some((l) => l.from <= from && l.to >= to);
    const never = !life.some((l) => l.from <= to && l.to >= from);
    const everExisted = life.length > 0 && life.some((l) => l.from <= q.start);
    const svc = scn.services.find((s) => serviceKey(s) === key);
    const addrs = q.answers.filter((a) => a.startsWith("A ")).map((a) => a.slice(2));
    if (q.rcode === "NXDOMAIN" && throughout) {
      add(key, "warning", `NXDOMAIN for ${q.name} while Service ${key} existed`);
      explained.add(`nxdomain ${key}`);
    } else if (q.rcode === "NOERROR" && addrs.length > 0 && never && everExisted) {
      add(key, "warning", `${q.name} still answered ${addrs.join(", ")} after ${key} was deleted`);
      explained.add(`stale ${key}`);
    } else if (q.rcode === "NOERROR" && throughout && addrs.some((a) => a !== svc?.clusterIP)) {
      add(key, "error", `${q.name} answered ${addrs.join(", ")}, not ${svc?.clusterIP}`);
      explained.add(`wrong ${key}`);
    }
  }
  // A fault the lookups never showed beyond the grace window cannot be expected of an analysis.
  for (const key of faults?.nxdomain ?? []) {
    if (!explained.has(`nxdomain ${key}`))
      notes.push(`dns fault nxdomain ${key}: no lookup showed it outside the grace window`);
  }
  for (const w of faults?.wrongAddress ?? []) {
    if (!explained.has(`wrong ${w.service}`))
      notes.push(
        `dns fault wrongAddress ${w.service}: no lookup showed it outside the grace window`,
      );
  }
  if (faults?.staleAnswers && ![...explained].some((e) => e.startsWith("stale "))) {
    notes.push(
      `dns fault staleAnswers: no lookup of a deleted Service more than ${DNS_CHECK_GRACE_SECONDS} s after its deletion`,
    );
  }
  return { findings, notes };
}

export function deriveExpected(
  scn: Scenario,
  truth: TruthFile,
  loaded: LoadedTimeline,
): ExpectedFile {
  const findings: ExpectedFinding[] = [];
  const seen = new Set<string>();
  const add = (f: ExpectedFinding): void => {
    const id = `${f.check}|${f.service}|${f.node}`;
    if (seen.has(id)) return;
    seen.add(id);
    findings.push(f);
  };
  const notes: string[] = [];
  const removals = truth.events.filter(
    (e) => e.kind === "deleteService" || e.kind === "removeEndpoint",
  );

  for (const ev of removals) {
    const what =
      ev.kind === "deleteService" ? `Service ${ev.service} was deleted` : `${ev.pod} was removed`;
    for (const node of ev.notAppliedOn) {
      for (const service of portLabels(scn, ev.service ?? "")) {
        add({
          check: "stale-rules",
          severity: "error",
          service,
          node,
          why: `${what} at ${new Date(ev.time * 1000).toISOString()} but ${node} never reloaded its rules`,
        });
      }
      for (const c of truth.connections) {
        if (c.node !== node || c.start <= ev.time || !c.answered || !removedBy(c, ev)) continue;
        add({
          check: "post-removal-traffic",
          severity: "error",
          service: c.service,
          node,
          why: `${what}; ${node} still translated connections to it afterwards`,
        });
      }
    }
    if (!scn.faults.keepUdpConntrack) continue;
    for (const c of truth.connections) {
      if (c.proto !== "udp" || !ev.appliedOn.includes(c.node)) continue;
      if (c.start >= ev.time || c.end <= ev.time || !c.answered || !removedBy(c, ev)) continue;
      add({
        check: "stale-conntrack",
        severity: "error",
        service: c.service,
        node: c.node,
        why: `${what}; its UDP conntrack entries were not deleted and datagrams kept reaching it`,
      });
    }
  }

  for (const c of truth.connections) {
    if (c.expectedVerdict === "rejected") {
      add({
        check: "no-endpoints",
        severity: "warning",
        service: c.service,
        node: c.node,
        why: `${c.service} has no endpoints; its rules reject connections from ${c.clientName}`,
      });
    } else if (c.expectedVerdict === "dropped") {
      add({
        check: "no-endpoints",
        severity: "info",
        service: c.service,
        node: c.node,
        why: `${c.service} has traffic policy Local and no endpoint on ${c.node}: its rules drop connections sent there`,
      });
    } else if (
      !c.answered &&
      (c.expectedVerdict === "blackholed" || c.expectedVerdict === "refused")
    ) {
      add({
        check: "blackholed-endpoints",
        severity: "warning",
        service: c.service,
        node: c.node,
        why: `translated connections to some endpoints of ${c.service} are refused (nothing listens) or never answered; truth.json has each one's error and conntrack entry`,
      });
    }
  }

  if (scn.faults.probabilities === "one-over-n") {
    for (const node of scn.faults.nodes) {
      for (const { state } of loaded.get(node) ?? []) {
        for (const [key, pods] of state.services) {
          // With one or two endpoints 1/n happens to be right; from three on it is skewed.
          if (pods.length < 3) continue;
          for (const service of portLabels(scn, key)) {
            add({
              check: "fairness",
              severity: "error",
              service,
              node,
              why: `every endpoint rule has probability 1/${pods.length}: the later endpoints get more than their share`,
            });
          }
        }
      }
    }
  }
  const dns = dnsFindings(scn, truth.lookups ?? [], truth.events);
  for (const f of dns.findings) add(f);
  notes.push(...dns.notes);
  if (scn.faults.noMasquerade) {
    notes.push("noMasquerade fault: no KUBE-MARK-MASQ rules; see expect.findings for checks");
  }
  for (const f of scn.expectFindings) {
    add({
      check: f.check,
      severity: f.severity,
      service: f.service,
      node: f.node,
      why: f.why ?? "listed in the scenario",
    });
  }

  const verdicts: Record<string, number> = {};
  for (const c of truth.connections) {
    verdicts[c.expectedVerdict] = (verdicts[c.expectedVerdict] ?? 0) + 1;
  }
  if (findings.length === 0)
    notes.push("clean scenario: an analysis must report no warnings or errors");
  return {
    scenario: scn.name,
    findings,
    verdicts,
    connections: truth.connections.length,
    notes,
  };
}
