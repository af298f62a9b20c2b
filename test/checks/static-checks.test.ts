import { describe, expect, it } from "vitest";
import { CHECK_METADATA, checks, runChecks } from "../../src/checks/index.js";
import { nodePortRange } from "../../src/checks/nodeport-range.js";
import { sanity } from "../../src/checks/sanity.js";
import { conn, context, ruleset, svc } from "./helpers.js";

describe("nodeport-range", () => {
  it("reports NodePorts outside the range once, and respects a custom range", () => {
    const sp = svc("default/web:http", { nodePort: 8080 });
    const ctx = context({ rulesets: [ruleset(1, "n1", 100, [sp]), ruleset(2, "n2", 100, [sp])] });
    expect(nodePortRange.run(ctx)).toMatchObject([
      { severity: "warning", evidence: { nodePort: 8080 } },
    ]);
    const custom = context({
      rulesets: [ruleset(1, "n1", 100, [sp])],
      options: { nodePortRange: [8000, 9000] },
    });
    expect(nodePortRange.run(custom)).toEqual([]);
  });
});

describe("sanity", () => {
  it("reports duplicate VIPs", () => {
    const a = svc("default/a:http");
    const b = svc("default/b:http");
    const found = sanity.run(context({ rulesets: [ruleset(1, "n1", 100, [a, b])] }));
    expect(found).toMatchObject([
      {
        severity: "error",
        evidence: { kind: "duplicate-vip", services: ["default/a:http", "default/b:http"] },
      },
    ]);
  });
  it("reports missing masquerade in the rules and on the wire", () => {
    const np = svc("default/web:http", {
      nodePort: 30080,
      masquerades: false,
      externalTrafficPolicy: "Cluster",
    });
    expect(sanity.run(context({ rulesets: [ruleset(1, "n1", 100, [np])] }))).toMatchObject([
      { node: "n1", evidence: { kind: "missing-masquerade" } },
    ]);
    const wire = context({
      rulesets: [
        ruleset(1, "n1", 100, [svc("default/web:http", { nodePort: 30080, masquerades: null })]),
      ],
      connections: [
        conn({
          client: { ip: "192.168.9.9", port: 5555 },
          vip: { ip: "172.18.0.2", port: 30080 },
          snat: null,
        }),
      ],
    });
    expect(sanity.run(wire)).toMatchObject([{ evidence: { kind: "missing-masquerade" } }]);
  });
  it("is quiet for Local policy and masqueraded traffic", () => {
    const local = svc("default/web:http", {
      nodePort: 30080,
      masquerades: false,
      externalTrafficPolicy: "Local",
    });
    const ctx = context({
      rulesets: [ruleset(1, "n1", 100, [local])],
      connections: [
        conn({
          client: { ip: "192.168.9.9", port: 5555 },
          vip: { ip: "172.18.0.2", port: 30080 },
          snat: { ip: "172.18.0.2", port: 5555 },
        }),
      ],
    });
    expect(sanity.run(ctx)).toEqual([]);
  });
});

describe("registry", () => {
  it("describes every check and has unique ids", () => {
    const ids = checks.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(Object.keys(CHECK_METADATA).sort());
  });
  it("orders findings by severity", () => {
    const ctx = context({
      rulesets: [
        ruleset(1, "n1", 100, [svc("default/a:http", { nodePort: 80 }), svc("default/b:http")]),
      ],
    });
    const sev = runChecks(ctx).map((f) => f.severity);
    expect(sev).toEqual(["error", "warning"]);
  });
});
