import { describe, expect, it } from "vitest";
import { dns } from "../../src/checks/dns.js";
import { envDiscovery } from "../../src/checks/env-discovery.js";
import type { DnsView } from "../../src/reconstruct/types.js";
import { looksLikePodEnv, parsePodEnv } from "../../src/rules/pod-env.js";
import { InputError } from "../../src/util/errors.js";
import { context, snapshot, svc } from "./helpers.js";

let id = 1;
function answer(ts: number, qname: string, rcode: string, answers: [string, string][]): DnsView {
  return {
    id: id++,
    node: "n1",
    ts,
    clientIp: "10.244.1.10",
    serverIp: "10.96.0.53",
    isResponse: true,
    qname,
    qtype: "A",
    rcode,
    answers: answers.map(([type, data]) => ({ name: qname, type, data })),
  };
}

const web = svc("default/web:http", { clusterIPs: ["10.96.0.10"] });

describe("dns", () => {
  const inv = [snapshot(100, [web]), snapshot(170, [web]), snapshot(200, [])];
  it("reports a wrong address, NXDOMAIN for an existing Service and answers after deletion", () => {
    const ctx = context({
      inventory: inv,
      dns: [
        answer(150, "web.default.svc.cluster.local.", "NOERROR", [["A", "10.96.0.99"]]),
        answer(160, "web.default.svc.cluster.local", "NXDOMAIN", []),
        answer(300, "web.default.svc.cluster.local", "NOERROR", [["A", "10.96.0.10"]]),
      ],
    });
    const kinds = dns
      .run(ctx)
      .map((f) => f.evidence.kind)
      .sort();
    expect(kinds).toEqual(["answer-for-deleted", "nxdomain-for-existing", "wrong-address"]);
  });
  it("does not judge what changed between two snapshots (creation, deletion, recreation)", () => {
    const fresh = svc("default/new:http", { clusterIPs: ["10.96.0.20"] });
    const old = svc("default/old:http", { clusterIPs: ["10.96.0.30"] });
    const before = svc("default/re:http", { clusterIPs: ["10.96.0.40"] });
    const after = svc("default/re:http", { clusterIPs: ["10.96.0.41"] });
    const ctx = context({
      // Sparse snapshots, as `svctrace collect` takes them: at the start and at the end.
      inventory: [snapshot(0, [old, before]), snapshot(60, [fresh, after])],
      dns: [
        // Created between the snapshots: a correct answer is not one for a deleted Service.
        answer(20, "new.default.svc.cluster.local", "NOERROR", [["A", "10.96.0.20"]]),
        // Deleted between them: NXDOMAIN may already have been right.
        answer(20, "old.default.svc.cluster.local", "NXDOMAIN", []),
        // Recreated between them: either ClusterIP may be the right answer; a third is wrong.
        answer(20, "re.default.svc.cluster.local", "NOERROR", [["A", "10.96.0.41"]]),
        answer(21, "re.default.svc.cluster.local", "NOERROR", [["A", "10.96.0.40"]]),
        answer(22, "re.default.svc.cluster.local", "NOERROR", [["A", "10.96.0.99"]]),
      ],
    });
    const found = dns.run(ctx);
    expect(found.map((f) => [f.evidence.kind, f.service])).toEqual([
      ["wrong-address", "default/re"],
    ]);
    expect(found[0]?.evidence.answers).toEqual(["10.96.0.99"]);
  });
  it("reports an ExternalName answered with another CNAME", () => {
    const ext = svc("default/db:5432", { clusterIPs: [], externalName: "db.example.com" });
    const ctx = context({
      inventory: [snapshot(100, [ext])],
      dns: [
        answer(150, "db.default.svc.cluster.local", "NOERROR", [["CNAME", "other.example.com."]]),
      ],
    });
    expect(dns.run(ctx).map((f) => f.evidence.kind)).toEqual(["wrong-cname"]);
  });
  it("is quiet on correct answers and names outside the cluster", () => {
    const ctx = context({
      inventory: inv,
      dns: [
        answer(150, "web.default.svc.cluster.local", "NOERROR", [["A", "10.96.0.10"]]),
        answer(150, "example.com", "NXDOMAIN", []),
        answer(150, "nosuch.default.svc.cluster.local", "NXDOMAIN", []),
      ],
    });
    expect(dns.run(ctx)).toEqual([]);
  });
});

describe("pod env", () => {
  const text =
    "# pod: default/client\n# started-at: 1970-01-01T00:02:30Z\nWEB_SERVICE_HOST=10.96.0.10\nWEB_SERVICE_PORT=80\nMULTI=a\nb\nHOME=/root\n";
  it("parses variables, header and multi-line values", () => {
    const env = parsePodEnv(text, "client.env");
    expect(env).toEqual({
      pod: "default/client",
      startedAt: 150,
      vars: {
        WEB_SERVICE_HOST: "10.96.0.10",
        WEB_SERVICE_PORT: "80",
        MULTI: "a\nb",
        HOME: "/root",
      },
    });
    expect(looksLikePodEnv(text)).toBe(true);
    expect(looksLikePodEnv("-A KUBE-SERVICES -j ACCEPT\n")).toBe(false);
  });
  it("names the line of bad input", () => {
    expect(() => parsePodEnv("garbage here\n", "x.env")).toThrow(InputError);
    expect(() => parsePodEnv("# pod: nonamespace\n", "x.env")).toThrow(/x\.env: line 1/);
  });
});

describe("env-discovery", () => {
  const api = svc("default/api:http", { clusterIPs: ["10.96.0.30"] });
  const env = (vars: Record<string, string>, startedAt: number | null = 150) => ({
    pod: "default/client",
    startedAt,
    vars,
    source: "client.env",
  });
  it("reports a variable pointing at an old ClusterIP, a deleted Service, and one created later", () => {
    const old = svc("default/old:http", { clusterIPs: ["10.96.0.40"] });
    const ctx = context({
      inventory: [
        snapshot(100, [svc("default/web:http", { clusterIPs: ["10.96.0.9"] }), old]),
        snapshot(200, [web, api]),
      ],
      podEnvs: [env({ WEB_SERVICE_HOST: "10.96.0.9", OLD_SERVICE_HOST: "10.96.0.40" })],
    });
    const kinds = envDiscovery
      .run(ctx)
      .map((f) => `${f.evidence.kind} ${f.service}`)
      .sort();
    expect(kinds).toEqual([
      "created-after-start default/api",
      "deleted-service default/old",
      "wrong-address default/web",
    ]);
  });
  it("is quiet when the variables are right", () => {
    const ctx = context({
      inventory: [snapshot(100, [web, api])],
      podEnvs: [
        env({
          WEB_SERVICE_HOST: "10.96.0.10",
          API_SERVICE_HOST: "10.96.0.30",
          KUBERNETES_SERVICE_HOST: "10.96.0.1",
        }),
      ],
    });
    expect(envDiscovery.run(ctx)).toEqual([]);
  });
});
