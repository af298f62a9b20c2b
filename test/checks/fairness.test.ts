import { describe, expect, it } from "vitest";
import { fairness } from "../../src/checks/fairness.js";
import { goodnessOfFit } from "../../src/checks/stats.js";
import { conn, context, ep, ruleset, svc } from "./helpers.js";

const three = [
  { endpoint: "10.244.1.5:8080", probability: 1 / 3 },
  { endpoint: "10.244.2.5:8080", probability: 1 / 3 },
  { endpoint: "10.244.3.5:8080", probability: 1 / 3 },
];

function traffic(counts: number[]) {
  const out = [];
  let t = 1000;
  for (let i = 0; i < counts.length; i++) {
    for (let k = 0; k < (counts[i] ?? 0); k++) {
      out.push(
        conn({ start: t++, candidates: three, endpoint: { ip: `10.244.${i + 1}.5`, port: 8080 } }),
      );
    }
  }
  return out;
}

describe("goodnessOfFit", () => {
  it("agrees with a hand-computed chi-square", () => {
    // (10-20)²/20 + (20-20)²/20 + (30-20)²/20 = 10, df 2 → p = e^-5
    const fit = goodnessOfFit([10, 20, 30], [1, 1, 1]);
    expect(fit.chiSquare).toBeCloseTo(10, 10);
    expect(fit.pValue).toBeCloseTo(Math.exp(-5), 10);
    expect(fit.maxRelativeDeviation).toBeCloseTo(0.5, 10);
    expect(fit.jainIndex).toBeLessThan(1);
  });
  it("gives p=1 and Jain 1 for a perfect split", () => {
    const fit = goodnessOfFit([50, 50], [0.5, 0.5]);
    expect(fit.pValue).toBeCloseTo(1, 10);
    expect(fit.jainIndex).toBeCloseTo(1, 10);
  });
});

describe("fairness (traffic)", () => {
  it("reports a skewed split with a p-value", () => {
    const ctx = context({ connections: traffic([20, 40, 240]) });
    const found = fairness.run(ctx).filter((f) => f.evidence.kind === "traffic");
    expect(found).toHaveLength(1);
    expect(found[0]?.service).toBe("default/web:http");
    expect(found[0]?.evidence.pValue).toBeLessThan(1e-6);
    expect(found[0]?.summary).toContain("10.244.3.5:8080");
  });
  it("stays quiet on an even split", () => {
    expect(fairness.run(context({ connections: traffic([100, 98, 102]) }))).toEqual([]);
  });
  it("does not cry wolf on a small sample (minimum-sample rule)", () => {
    // All 12 connections on one endpoint: significant, but below 30 samples.
    const ctx = context({ connections: traffic([0, 0, 12]) });
    expect(fairness.run(ctx)).toEqual([]);
    const loose = context({
      connections: traffic([0, 0, 12]),
      options: { minSamples: 10, minExpected: 1 },
    });
    expect(fairness.run(loose)).toHaveLength(1);
  });
  it("counts only a client's first connection under ClientIP affinity", () => {
    const sp = svc("default/web:http", { affinityTimeout: 10800 });
    const many = [];
    for (let i = 0; i < 200; i++) {
      many.push(
        conn({
          start: 1000 + i,
          candidates: three,
          client: { ip: "10.244.9.9", port: 1000 + i },
          endpoint: { ip: "10.244.3.5", port: 8080 },
        }),
      );
    }
    const ctx = context({ rulesets: [ruleset(1, "n1", 0, [sp])], connections: many });
    expect(fairness.run(ctx)).toEqual([]);
  });
});

describe("fairness (rules)", () => {
  it("reports 1/n on every rule (the effective split is not even)", () => {
    // Rules with --probability 1/3 each: effective 1/3, 2/9, 4/9.
    const sp = svc("default/web:http", {
      endpoints: [
        ep("10.244.1.5:8080", 1 / 3),
        ep("10.244.2.5:8080", 2 / 9),
        ep("10.244.3.5:8080", 4 / 9),
      ],
    });
    const found = fairness.run(
      context({ rulesets: [ruleset(1, "n1", 100, [sp]), ruleset(2, "n1", 200, [sp])] }),
    );
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ severity: "error", node: "n1", from: 100, to: 200 });
    expect(found[0]?.evidence.kind).toBe("rules");
  });
  it("accepts kube-proxy's 1/n, 1/(n-1), … sequence", () => {
    const sp = svc("default/web:http", {
      endpoints: [
        ep("10.244.1.5:8080", 1 / 3),
        ep("10.244.2.5:8080", 1 / 3),
        ep("10.244.3.5:8080", 1 / 3),
      ],
    });
    expect(fairness.run(context({ rulesets: [ruleset(1, "n1", 100, [sp])] }))).toEqual([]);
  });
});
