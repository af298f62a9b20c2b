import { describe, expect, it } from "vitest";
import { postRemovalTraffic } from "../../src/checks/post-removal-traffic.js";
import { findRemovals } from "../../src/checks/removals.js";
import { staleConntrack } from "../../src/checks/stale-conntrack.js";
import { staleRules } from "../../src/checks/stale-rules.js";
import { conn, context, ep, ruleset, snapshot, svc } from "./helpers.js";

const web = () => svc("default/web:http", { endpoints: [ep("10.244.2.5:8080")] });
const webTwo = () =>
  svc("default/web:http", { endpoints: [ep("10.244.2.5:8080"), ep("10.244.1.5:8080")] });
const other = () =>
  svc("default/other:http", { clusterIPs: ["10.96.0.20"], endpoints: [ep("10.244.1.7:80")] });

describe("stale-rules", () => {
  it("reports a node that keeps a deleted Service's rules (inventory timeline)", () => {
    const ctx = context({
      inventory: [snapshot(100, [web(), other()]), snapshot(200, [other()])],
      rulesets: [
        ruleset(1, "n1", 100, [web(), other()]),
        ruleset(2, "n2", 100, [web(), other()]),
        ruleset(3, "n1", 300, [other()]),
        ruleset(4, "n2", 300, [web(), other()]),
      ],
    });
    const found = staleRules.run(ctx).filter((f) => f.evidence.kind === "removed-service");
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({
      severity: "error",
      node: "n2",
      service: "default/web:http",
      from: 300,
    });
  });
  it("dates the removal from a later dump when there is no inventory", () => {
    const ctx = context({
      rulesets: [
        ruleset(1, "n1", 100, [web(), other()]),
        ruleset(2, "n2", 100, [web(), other()]),
        ruleset(3, "n1", 200, [other()]),
        ruleset(4, "n2", 300, [web(), other()]),
      ],
    });
    expect(findRemovals(ctx)).toMatchObject([
      { service: "default/web:http", endpoint: null, removedAt: 200, source: "rules" },
    ]);
    const found = staleRules.run(ctx).filter((f) => f.evidence.kind === "removed-service");
    expect(found.map((f) => f.node)).toEqual(["n2"]);
  });
  it("is quiet within the grace period and when every node follows", () => {
    const ctx = context({
      inventory: [snapshot(100, [web(), other()]), snapshot(200, [other()])],
      rulesets: [
        ruleset(1, "n1", 100, [web(), other()]),
        ruleset(2, "n1", 203, [web(), other()]), // 3 s after: within the 5 s grace
        ruleset(3, "n1", 300, [other()]),
        ruleset(4, "n2", 300, [other()]),
      ],
    });
    expect(staleRules.run(ctx)).toEqual([]);
  });
  it("reports a node still behind after its peers caught up, even within the grace period", () => {
    const ctx = context({
      inventory: [snapshot(100, [web(), other()]), snapshot(200, [other()])],
      rulesets: [ruleset(1, "n1", 201, [other()]), ruleset(2, "n2", 202, [web(), other()])],
    });
    const found = staleRules.run(ctx).filter((f) => f.evidence.kind === "removed-service");
    expect(found.map((f) => f.node)).toEqual(["n2"]);
  });
  it("does not compare nodes while a change rolls out", () => {
    const ctx = context({
      inventory: [snapshot(50, [web()]), snapshot(99, [webTwo()])],
      rulesets: [ruleset(1, "n1", 100, [webTwo()]), ruleset(2, "n2", 101, [web()])],
    });
    expect(staleRules.run(ctx).filter((f) => f.evidence.kind === "node-disagreement")).toEqual([]);
  });
  it("reports orphan chains, unlisted endpoints and disagreeing nodes", () => {
    const ctx = context({
      inventory: [snapshot(50, [web()])],
      rulesets: [
        ruleset(1, "n1", 100, [webTwo()], ["KUBE-SEP-ABC"]),
        ruleset(2, "n2", 101, [web()]),
      ],
    });
    const kinds = staleRules
      .run(ctx)
      .map((f) => f.evidence.kind)
      .sort();
    expect(kinds).toEqual(["node-disagreement", "orphan-chain", "unlisted-endpoint"]);
  });
});

describe("post-removal-traffic", () => {
  const base = {
    inventory: [snapshot(100, [web()]), snapshot(200, [])],
    rulesets: [ruleset(1, "n1", 100, [web()]), ruleset(2, "n2", 100, [web()])],
  };
  it("reports translations long after removal as errors, with the latency", () => {
    const ctx = context({
      ...base,
      connections: [
        conn({ start: 150, node: "n1" }),
        conn({ start: 230, node: "n2" }),
        conn({ start: 250.5, node: "n2" }),
      ],
    });
    const found = postRemovalTraffic.run(ctx);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ severity: "error", node: "n2", service: "default/web:http" });
    expect(found[0]?.evidence.latencySeconds).toBeCloseTo(50.5, 3);
    expect(found[0]?.evidence.connections).toBe(2);
  });
  it("reports short programming latency as info only", () => {
    const ctx = context({ ...base, connections: [conn({ start: 201.5, node: "n1" })] });
    expect(postRemovalTraffic.run(ctx)).toMatchObject([{ severity: "info", node: "n1" }]);
  });
  it("is an error however soon when a later dump shows the node kept the rules", () => {
    const stuck = { ...base, rulesets: [...base.rulesets, ruleset(3, "n1", 300, [web()])] };
    const ctx = context({ ...stuck, connections: [conn({ start: 201.5, node: "n1" })] });
    expect(postRemovalTraffic.run(ctx)).toMatchObject([{ severity: "error", node: "n1" }]);
  });
  it("is quiet when nothing was translated after removal", () => {
    expect(
      postRemovalTraffic.run(context({ ...base, connections: [conn({ start: 150 })] })),
    ).toEqual([]);
  });
});

describe("stale-conntrack", () => {
  it("reports a UDP flow that outlived its endpoint", () => {
    const ctx = context({
      inventory: [snapshot(100, [webTwo()]), snapshot(200, [web()])],
      connections: [
        conn({ proto: "udp", start: 150, end: 260, endpoint: { ip: "10.244.1.5", port: 8080 } }),
        conn({ proto: "udp", start: 150, end: 260, endpoint: { ip: "10.244.2.5", port: 8080 } }),
      ],
    });
    const found = staleConntrack.run(ctx);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ severity: "error", service: "default/web:http" });
    expect(found[0]?.evidence.endpoint).toBe("10.244.1.5:8080");
  });
  it("reports a conntrack record whose reply source is no endpoint", () => {
    const t = (s: string, sp: number, d: string, dp: number) => ({
      proto: 17,
      srcIp: s,
      srcPort: sp,
      dstIp: d,
      dstPort: dp,
    });
    const ctx = context({
      inventory: [
        snapshot(100, [
          svc("default/web:http", { proto: "udp", endpoints: [ep("10.244.2.5:8080")] }),
        ]),
      ],
      conntrack: [
        {
          id: 1,
          node: "n1",
          takenAt: 300,
          proto: 17,
          orig: t("10.244.1.10", 5353, "10.96.0.10", 80),
          reply: t("10.244.9.9", 8080, "10.244.1.10", 5353),
          state: null,
          timeout: 100,
        },
        {
          id: 2,
          node: "n1",
          takenAt: 300,
          proto: 17,
          orig: t("10.244.1.11", 5353, "10.96.0.10", 80),
          reply: t("10.244.2.5", 8080, "10.244.1.11", 5353),
          state: null,
          timeout: 100,
        },
      ],
    });
    const found = staleConntrack.run(ctx);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ severity: "warning", node: "n1" });
    expect(found[0]?.evidence.endpoint).toBe("10.244.9.9:8080");
  });
  it("is quiet when flows end with their endpoint", () => {
    const ctx = context({
      inventory: [snapshot(100, [webTwo()]), snapshot(200, [web()])],
      connections: [
        conn({ proto: "udp", start: 150, end: 199, endpoint: { ip: "10.244.1.5", port: 8080 } }),
      ],
    });
    expect(staleConntrack.run(ctx)).toEqual([]);
  });
});
