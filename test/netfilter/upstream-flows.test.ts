import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type GenNode,
  type GenOptions,
  type GenServicePort,
  generateIptablesRestore,
} from "../../src/lab/kubeproxy-gen.js";
import { type SimResult, Simulator } from "../../src/netfilter/index.js";
import { parseIptablesSave } from "../../src/rules/iptables-save.js";
import {
  expectedTokens,
  fixtureDir,
  totalProbability,
  upstreamLocalIPs,
  upstreamTokens,
} from "./helpers.js";

interface FlowCase {
  name: string;
  sourceIP: string;
  destIP: string;
  destPort: number;
  protocol: "tcp" | "udp" | "sctp";
  output: string;
  masq: boolean;
}

interface Suite {
  test: string;
  source: string;
  node: GenNode;
  services: GenServicePort[];
  /** Generator options that differ from upstream's fake proxier defaults. */
  generator?: GenOptions;
  cases: FlowCase[];
}

const suites = JSON.parse(
  readFileSync(join(fixtureDir, "upstream-packet-flows.json"), "utf8"),
) as Suite[];

/**
 * The kernel's reading of upstream's expectation: "" (no rule matched) is an untranslated
 * packet accepted by policy; ACCEPT/DROP/REJECT come from a filter rule; endpoints are the
 * DNAT outcomes, each equally likely, each masqueraded exactly when upstream says so.
 */
export function expectKernelAgrees(r: SimResult, c: FlowCase): void {
  const o = r.outcomes;
  expect(totalProbability(o)).toBeCloseTo(1, 9);
  if (c.output === "") {
    for (const x of o)
      expect(x).toMatchObject({ verdict: "ACCEPT", decidedBy: "policy", endpoint: null });
    return;
  }
  if (["ACCEPT", "DROP", "REJECT"].includes(c.output)) {
    expect(o).toHaveLength(1);
    expect(o[0]).toMatchObject({ verdict: c.output, decidedBy: "rule", endpoint: null });
    return;
  }
  const want = expectedTokens(c.output);
  expect(new Set(o.map((x) => x.endpoint))).toEqual(want);
  for (const x of o) {
    expect(x.verdict).toBe("DNAT");
    expect(x.masquerade).toBe(c.masq);
    expect(x.probability).toBeCloseTo(1 / want.size, 9);
  }
}

for (const suite of suites) {
  const text = generateIptablesRestore(
    suite.services,
    suite.node,
    {},
    {
      masqueradeMark: "0x4000",
      randomFully: false,
      nfacct: true,
      ...suite.generator,
    },
  );
  const sim = new Simulator(parseIptablesSave(text, { source: suite.test }), {
    localAddresses: upstreamLocalIPs,
  });
  describe(`${suite.test} (${suite.source})`, () => {
    for (const c of suite.cases) {
      const packet = { proto: c.protocol, src: c.sourceIP, dst: c.destIP, dport: c.destPort };
      it(`${c.name}: upstream tracer semantics`, () => {
        const r = sim.trace(packet, { mode: "upstream" });
        expect(upstreamTokens(r)).toEqual(expectedTokens(c.output));
        expect(r.outcomes.some((o) => o.masquerade)).toBe(c.masq);
      });
      it(`${c.name}: kernel semantics`, () => {
        const r = sim.trace(packet);
        expect(r.unmodelled).toEqual([]);
        expectKernelAgrees(r, c);
      });
    }
  });
}
