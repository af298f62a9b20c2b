import { type Scenario, serviceKey } from "./scenario.js";
import type { ClusterState } from "./state.js";
import type {
  ExpectedFile,
  ExpectedFinding,
  LabEvent,
  TruthConnection,
  TruthFile,
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
