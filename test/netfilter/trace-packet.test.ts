import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Simulator } from "../../src/netfilter/index.js";
import {
  expectedTokens,
  loadRules,
  referenceDir,
  totalProbability,
  upstreamLocalIPs,
  upstreamTokens,
} from "./helpers.js";

interface UpstreamCase {
  name: string;
  sourceIP: string;
  destIP: string;
  destPort: number;
  protocol: "tcp" | "udp" | "sctp";
  expected_output: string;
  expected_masq: boolean;
  rules: string;
}

const cases = JSON.parse(
  readFileSync(join(referenceDir, "01-TestTracePacket.cases.json"), "utf8"),
) as UpstreamCase[];
const rules = loadRules(join(referenceDir, "01-TestTracePacket.txt"));
const sim = new Simulator(rules, { localAddresses: upstreamLocalIPs });

describe("upstream TestTracePacket, upstream tracer semantics", () => {
  for (const c of cases) {
    it(c.name, () => {
      const r = sim.trace(
        { proto: c.protocol, src: c.sourceIP, dst: c.destIP, dport: c.destPort },
        { mode: "upstream" },
      );
      expect(upstreamTokens(r)).toEqual(expectedTokens(c.expected_output));
      expect(r.outcomes.some((o) => o.masquerade)).toBe(c.expected_masq);
      expect(totalProbability(r.outcomes)).toBeCloseTo(1, 9);
    });
  }
});

describe("upstream TestTracePacket, kernel semantics", () => {
  for (const c of cases) {
    it(c.name, () => {
      const r = sim.trace({ proto: c.protocol, src: c.sourceIP, dst: c.destIP, dport: c.destPort });
      const o = r.outcomes;
      expect(totalProbability(o)).toBeCloseTo(1, 9);
      expect(r.unmodelled).toEqual([]);
      const want = expectedTokens(c.expected_output);
      if (c.expected_output === "") {
        // Upstream's "no rule matched" is the kernel's "accepted by policy, untranslated".
        expect(o).toHaveLength(1);
        expect(o[0]).toMatchObject({ verdict: "ACCEPT", decidedBy: "policy", endpoint: null });
      } else if (["ACCEPT", "DROP", "REJECT"].includes(c.expected_output)) {
        expect(o).toHaveLength(1);
        expect(o[0]).toMatchObject({
          verdict: c.expected_output,
          decidedBy: "rule",
          endpoint: null,
        });
      } else {
        expect(new Set(o.map((x) => x.endpoint))).toEqual(want);
        for (const x of o) {
          expect(x.verdict).toBe("DNAT");
          expect(x.masquerade).toBe(c.expected_masq);
          expect(x.probability).toBeCloseTo(1 / want.size, 9);
        }
      }
    });
  }
});
