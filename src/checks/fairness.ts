import type { Connection } from "../reconstruct/types.js";
import { addressFamily } from "../util/ip.js";
import { goodnessOfFit } from "./stats.js";
import type { CheckContext, ConnectionPass, Finding } from "./types.js";
import { defineCheck, runPass } from "./types.js";
import {
  EndpointCounts,
  endpointText,
  findService,
  GroupIndex,
  round,
  serviceRuleLines,
} from "./util.js";

type FairnessFinding = Extract<Finding, { check: "fairness" }>;

/** Verdicts where the kernel's choice of endpoint is known and was one of the candidates. */
const CHOSEN_LIST = ["consistent", "blackholed", "refused", "vip-inferred"] as const;
const CHOSEN = new Set<string>(CHOSEN_LIST);

interface Group {
  service: string;
  node: string;
  expected: Map<string, number>;
  counts: EndpointCounts;
  from: number;
  to: number;
  affinityClients: Set<string> | null;
}

interface Groups {
  /** By signature text: candidates arrays with the same content are one group. */
  bySignature: Map<string, Group>;
  /** By Service, node and candidates array: found without building a key per connection. */
  index: GroupIndex<Group>;
}

function trafficFairness(ctx: CheckContext): ConnectionPass<FairnessFinding> {
  const groups: Groups = { bySignature: new Map(), index: new GroupIndex() };
  return {
    verdicts: CHOSEN_LIST,
    visit: (c) => visit(ctx, groups, c),
    finish: () => report(ctx, groups.bySignature),
  };
}

function visit(ctx: CheckContext, groups: Groups, c: Connection): void {
  if (!CHOSEN.has(c.verdict) || c.endpoint === null || c.service === null || c.node === null) {
    return;
  }
  if (c.candidates.length < 2) return;
  let g = groups.index.find(c.service, c.node, c.candidates);
  if (g === undefined) g = group(ctx, groups, c, c.service, c.node);
  if (g.affinityClients !== null) {
    if (g.affinityClients.has(c.client.ip)) return;
    g.affinityClients.add(c.client.ip);
  }
  g.counts.add(c.endpoint.ip, c.endpoint.port);
  if (c.start < g.from) g.from = c.start;
  if (c.start > g.to) g.to = c.start;
}

function group(ctx: CheckContext, groups: Groups, c: Connection, service: string, node: string) {
  const key = `${service}|${node}|${candidateSignature(c)}`;
  let g = groups.bySignature.get(key);
  if (g === undefined) {
    const rs =
      c.rulesetId === null ? null : ctx.rulesets.at(node, c.start, addressFamily(c.vip.ip));
    const sp = rs === null ? null : findService(rs, service);
    g = {
      service,
      node,
      expected: new Map(c.candidates.map((x) => [x.endpoint, x.probability])),
      counts: new EndpointCounts(),
      from: c.start,
      to: c.start,
      // With ClientIP affinity only a client's first connection is a fresh draw.
      affinityClients: sp?.affinityTimeout != null ? new Set() : null,
    };
    groups.bySignature.set(key, g);
  }
  groups.index.add(service, node, c.candidates, g);
  return g;
}

function report(ctx: CheckContext, groups: Map<string, Group>): FairnessFinding[] {
  const out: FairnessFinding[] = [];
  for (const g of groups.values()) {
    const eps = [...g.expected.keys()];
    const byText = g.counts.byText();
    const counts = eps.map((e) => byText.get(e) ?? 0);
    const probs = eps.map((e) => g.expected.get(e) ?? 0);
    const fit = goodnessOfFit(counts, probs);
    // Minimum-sample rule: small samples deviate by chance; do not cry wolf.
    if (fit.samples < ctx.options.minSamples || fit.minExpected < ctx.options.minExpected) continue;
    if (fit.pValue >= ctx.options.alpha || fit.maxRelativeDeviation < ctx.options.minDeviation) {
      continue;
    }
    const totalP = probs.reduce((a, b) => a + b, 0) || 1;
    let worst = eps[0] ?? "";
    let worstDev = -1;
    eps.forEach((e, i) => {
      const expected = (fit.samples * (probs[i] ?? 0)) / totalP;
      const dev = expected > 0 ? Math.abs((counts[i] ?? 0) - expected) / expected : 0;
      if (dev > worstDev) {
        worstDev = dev;
        worst = e;
      }
    });
    out.push({
      check: "fairness",
      severity: "warning",
      service: g.service,
      node: g.node,
      from: g.from,
      to: g.to,
      summary: `${g.service} on ${g.node}: ${fit.samples} connections are not split as the rules promise (p=${fit.pValue.toExponential(2)}, ${worst} off by ${Math.round(fit.maxRelativeDeviation * 100)}%); compare the --probability values with \`svctrace rules\` and the kube-proxy version.`,
      evidence: {
        kind: "traffic",
        counts: Object.fromEntries(eps.map((e, i) => [e, counts[i] ?? 0])),
        expected: Object.fromEntries(eps.map((e, i) => [e, round(probs[i] ?? 0)])),
        samples: fit.samples,
        chiSquare: round(fit.chiSquare),
        pValue: fit.pValue,
        maxRelativeDeviation: round(fit.maxRelativeDeviation),
        jainIndex: round(fit.jainIndex),
      },
    });
  }
  return out;
}

const signatures = new WeakMap<object, string>();

function candidateSignature(c: Connection): string {
  let sig = signatures.get(c.candidates);
  if (sig === undefined) {
    sig = c.candidates
      .map((x) => `${x.endpoint}=${x.probability.toFixed(3)}`)
      .sort()
      .join(",");
    signatures.set(c.candidates, sig);
  }
  return sig;
}

/** kube-proxy promises an even split over ready endpoints; check the rules alone. */
function rulesFairness(ctx: CheckContext): FairnessFinding[] {
  const seen = new Map<string, FairnessFinding>();
  for (const rs of ctx.rulesets.all) {
    for (const sp of rs.services) {
      const eps = sp.endpoints.filter((e) => e.probability !== null);
      if (eps.length < 2) continue;
      const even = 1 / eps.length;
      let maxDev = 0;
      for (const e of eps) maxDev = Math.max(maxDev, Math.abs((e.probability ?? 0) - even) / even);
      if (maxDev < 0.01) continue;
      const key = `${rs.node}|${sp.key}`;
      const prev = seen.get(key);
      if (prev !== undefined) {
        prev.to = rs.takenAt;
        continue;
      }
      seen.set(key, {
        check: "fairness",
        severity: "error",
        service: sp.key,
        node: rs.node,
        from: rs.takenAt,
        to: rs.takenAt,
        summary: `${sp.key} on ${rs.node}: the rules give its ${eps.length} endpoints probabilities ${eps.map((e) => round(e.probability ?? 0, 3)).join("/")} instead of an even ${round(even, 3)} each; the --probability sequence should be 1/n, 1/(n-1), …, 1.`,
        evidence: {
          kind: "rules",
          expected: Object.fromEntries(eps.map((e) => [endpointText(e.ip, e.port), round(even)])),
          counts: Object.fromEntries(
            eps.map((e) => [endpointText(e.ip, e.port), round(e.probability ?? 0)]),
          ),
          maxRelativeDeviation: round(maxDev),
          rules: serviceRuleLines(rs, sp),
        },
      });
    }
  }
  return [...seen.values()];
}

export const fairness = defineCheck({
  id: "fairness",
  title: "Load-balancing fairness",
  description:
    "Connections per endpoint against the rules' probabilities (chi-square, minimum sample), and rules that do not split evenly.",
  run(ctx) {
    return runPass(ctx, fairnessPass(ctx));
  },
  pass: fairnessPass,
});

function fairnessPass(ctx: CheckContext): ConnectionPass<FairnessFinding> {
  const traffic = trafficFairness(ctx);
  return {
    ...traffic,
    finish: () => [...rulesFairness(ctx), ...traffic.finish()],
  };
}
