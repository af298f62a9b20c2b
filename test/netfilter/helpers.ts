import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Outcome, SimResult } from "../../src/netfilter/index.js";
import { parseIptablesSave } from "../../src/rules/iptables-save.js";
import type { RuleSet } from "../../src/rules/model.js";

/** `../shared/reference/kube-proxy` relative to the repository root (as in CI). */
export const referenceDir = join(
  import.meta.dirname,
  "..",
  "..",
  "..",
  "shared",
  "reference",
  "kube-proxy",
);
export const fixtureDir = join(import.meta.dirname, "..", "fixtures", "netfilter");

export function loadRules(path: string): RuleSet {
  return parseIptablesSave(readFileSync(path, "utf8"), { source: path });
}

/** The node addresses upstream's tests treat as local (see the reference README). */
export const upstreamLocalIPs = [
  "127.0.0.1",
  "::1",
  "192.168.0.2",
  "192.168.1.2",
  "192.168.99.11",
  "2001:db8::1",
  "2001:db8:1::2",
];

/**
 * Upstream's tracer output as a set of tokens: every endpoint a DNAT reached, plus ACCEPT,
 * DROP or REJECT when a filter rule (not a policy) said so.
 */
export function upstreamTokens(result: SimResult): Set<string> {
  const tokens = new Set<string>();
  for (const o of result.outcomes) {
    if (o.endpoint !== null) tokens.add(o.endpoint);
    if (o.verdict === "DROP" || o.verdict === "REJECT") tokens.add(o.verdict);
    else if (o.filterVerdict === "ACCEPT" && o.decidedBy === "rule" && o.endpoint === null) {
      tokens.add("ACCEPT");
    }
  }
  return tokens;
}

export function expectedTokens(output: string): Set<string> {
  return new Set(output === "" ? [] : output.split(",").map((s) => s.trim()));
}

export function totalProbability(outcomes: Outcome[]): number {
  return outcomes.reduce((sum, o) => sum + o.probability, 0);
}
