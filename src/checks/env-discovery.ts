import type { CheckContext, Finding } from "./types.js";
import { defineCheck, serviceName } from "./types.js";

type EnvFinding = Extract<Finding, { check: "env-discovery" }>;

/** Kubernetes' variable prefix for a Service name (pkg/kubelet/envvars). */
export function envPrefix(name: string): string {
  return name.toUpperCase().replace(/-/g, "_");
}

export const envDiscovery = defineCheck({
  id: "env-discovery",
  title: "Environment-variable discovery",
  description:
    "<SVC>_SERVICE_HOST variables pointing at an address that is not (or no longer) the Service's ClusterIP, and Services created after the pod started.",
  run(ctx: CheckContext): EnvFinding[] {
    const snaps = ctx.inventory.snapshots;
    const latest = snaps[snaps.length - 1];
    if (latest === undefined) return [];
    const out: EnvFinding[] = [];
    for (const env of ctx.podEnvs) {
      const ns = env.pod.split("/")[0] ?? "";
      // Service name (in the pod's namespace) by env prefix, from every snapshot.
      const everByPrefix = new Map<string, string>();
      for (const s of snaps) {
        for (const n of [...s.serviceNames, ...s.services.map((x) => serviceName(x.key))]) {
          const [sns, sname] = n.split("/");
          if (sns === ns && sname !== undefined) everByPrefix.set(envPrefix(sname), n);
        }
      }
      const current = new Map<string, Set<string>>();
      const createdAt = new Map<string, number | null>();
      for (const sp of latest.services) {
        const n = serviceName(sp.key);
        if (!n.startsWith(`${ns}/`)) continue;
        let set = current.get(n);
        if (set === undefined) current.set(n, (set = new Set()));
        for (const ip of sp.clusterIPs) if (ip !== "None" && ip !== "") set.add(ip);
        createdAt.set(n, sp.createdAt);
      }
      for (const n of latest.serviceNames)
        if (n.startsWith(`${ns}/`) && !current.has(n)) current.set(n, new Set());
      const seenPrefixes = new Set<string>();
      for (const [k, value] of Object.entries(env.vars)) {
        const m = /^([A-Z0-9_]+)_SERVICE_HOST$/.exec(k);
        if (m === null || m[1] === undefined) continue;
        seenPrefixes.add(m[1]);
        const svc = everByPrefix.get(m[1]);
        if (svc === undefined) continue; // a Service we know nothing about (e.g. default/kubernetes)
        const ips = current.get(svc);
        if (ips === undefined) {
          out.push({
            check: "env-discovery",
            severity: "warning",
            service: svc,
            node: null,
            from: env.startedAt,
            to: latest.takenAt,
            summary: `pod ${env.pod} has ${k}=${value} for Service ${svc}, which no longer exists; restart the pod or stop using the variable.`,
            evidence: {
              pod: env.pod,
              kind: "deleted-service",
              variable: k,
              value,
              source: env.source,
            },
          });
          continue;
        }
        if (ips.size > 0 && !ips.has(value)) {
          out.push({
            check: "env-discovery",
            severity: "warning",
            service: svc,
            node: null,
            from: env.startedAt,
            to: latest.takenAt,
            summary: `pod ${env.pod} has ${k}=${value} but Service ${svc}'s ClusterIP is now ${[...ips].join(", ")} (recreated after the pod started); restart the pod or use DNS.`,
            evidence: {
              pod: env.pod,
              kind: "wrong-address",
              variable: k,
              value,
              expected: [...ips],
              source: env.source,
            },
          });
        }
      }
      if (env.startedAt === null) continue;
      for (const [svc, ips] of current) {
        const name = svc.split("/")[1] ?? "";
        if (seenPrefixes.has(envPrefix(name)) || ips.size === 0) continue;
        const created = createdAt.get(svc) ?? null;
        const firstSeen = snaps.find((s) =>
          s.services.some((x) => serviceName(x.key) === svc),
        )?.takenAt;
        const firstSnap = snaps[0]?.takenAt ?? Number.POSITIVE_INFINITY;
        const after =
          created !== null
            ? created > env.startedAt
            : firstSeen !== undefined && firstSnap <= env.startedAt && firstSeen > env.startedAt;
        if (!after) continue;
        out.push({
          check: "env-discovery",
          severity: "info",
          service: svc,
          node: null,
          from: env.startedAt,
          to: created ?? firstSeen ?? null,
          summary: `pod ${env.pod} started before Service ${svc} existed, so it has no ${envPrefix(name)}_SERVICE_HOST; it must use DNS (${name}.${ns}.svc) to find it.`,
          evidence: {
            pod: env.pod,
            kind: "created-after-start",
            expected: [...ips],
            source: env.source,
          },
        });
      }
    }
    return out;
  },
});
