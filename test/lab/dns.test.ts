import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type dnsPacket from "dns-packet";
import { afterAll, describe, expect, it } from "vitest";
import { clusterDnsZone, serviceOfDnsName } from "../../src/lab/cluster-dns.js";
import {
  answerQuery,
  type DnsServerLog,
  type DnsZone,
  startDnsServer,
} from "../../src/lab/dns-server.js";
import { dnsFindings } from "../../src/lab/expected.js";
import { resolveNames } from "../../src/lab/resolve.js";
import { parseScenario } from "../../src/lab/scenario.js";
import { initialState } from "../../src/lab/state.js";
import type { LabEvent, TruthLookup } from "../../src/lab/truth.js";
import { errorOf, freePort } from "./helpers.js";

// Cluster DNS in the lab: the scenario keys, the zone the runner derives (with faults), the
// server's answers, one real exchange over loopback (no root needed), and the dns findings the
// lab expects from the lookups.

const dns = createRequire(import.meta.url)("dns-packet") as typeof dnsPacket;
const work = mkdtempSync(join(tmpdir(), "svctrace-dns-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const yaml = `name: dns
nodes: [{ name: n1 }, { name: n2 }]
pods:
  - { name: api-1, node: n1, labels: { app: api } }
  - { name: web-1, node: n2, labels: { app: web } }
clients: [{ name: ca, node: n1 }, { name: ext }]
services:
  - { name: api, selector: { app: api }, ports: [{ name: http, port: 80 }] }
  - { name: web, selector: { app: web }, ports: [{ name: http, port: 80 }] }
dns: { node: n2 }
faults:
  dns: { staleAnswers: true, nxdomain: [web], wrongAddress: { service: api, ip: 10.96.0.99 } }
steps:
  - resolve: { from: ca, name: api.default.svc.cluster.local, count: 3 }
`;

function query(name: string, type: "A" | "AAAA" = "A", id = 4711): Buffer {
  return dns.encode({
    type: "query",
    id,
    flags: dns.RECURSION_DESIRED,
    questions: [{ type, name, class: "IN" }],
  });
}

describe("scenario with cluster DNS", () => {
  it("adds the DNS pod and the kube-dns Service, and resolves the resolve step", () => {
    const scn = parseScenario(yaml);
    expect(scn.dns).toEqual({
      pod: "coredns",
      service: "kube-system/kube-dns",
      clusterIP: "10.96.0.250",
      domain: "cluster.local",
      ttl: 5,
    });
    const pod = scn.pods.find((p) => p.name === "coredns");
    expect(pod).toMatchObject({ namespace: "kube-system", node: "n2", dnsServer: true });
    // After every other pod: enabling DNS moves no address.
    expect(pod?.ip).toBe("10.244.2.11");
    expect(scn.pods.find((p) => p.name === "ca")?.ip).toBe("10.244.1.11");
    const svc = scn.services.find((s) => s.name === "kube-dns");
    expect(svc?.ports).toEqual([
      { name: "dns", protocol: "UDP", port: 53, targetPort: 53, nodePort: null },
    ]);
    expect(initialState(scn).services.get("kube-system/kube-dns")).toEqual(["coredns"]);
    expect(scn.steps[0]).toEqual({
      kind: "resolve",
      from: "ca",
      name: "api.default.svc.cluster.local",
      qtype: "A",
      count: 3,
      rate: 5,
      background: false,
      timeoutMs: 1000,
      node: "n1",
    });
    expect(scn.faults.dns).toEqual({
      staleAnswers: true,
      nxdomain: ["default/web"],
      wrongAddress: [{ service: "default/api", ip: "10.96.0.99" }],
    });
  });

  it("accepts dns: true", () => {
    const scn = parseScenario(yaml.replace("dns: { node: n2 }", "dns: true"));
    expect(scn.pods.find((p) => p.name === "coredns")?.node).toBe("n1");
  });

  it("names the line of a bad DNS key, step or fault", () => {
    const noDns = errorOf(() => parseScenario(yaml.replace("dns: { node: n2 }\n", "")));
    expect(noDns.message).toContain("faults.dns");
    expect(noDns.line).toBe(11);
    const unknown = errorOf(() =>
      parseScenario(yaml.replace("nxdomain: [web]", "nxdomain: [nope]")),
    );
    expect(unknown.message).toContain("no Service default/nope");
    expect(unknown.line).toBe(12);
    const external = errorOf(() => parseScenario(yaml.replace("from: ca,", "from: ext,")));
    expect(external.message).toContain("external client cannot reach the kube-dns ClusterIP");
    expect(external.line).toBe(14);
    const badName = errorOf(() =>
      parseScenario(yaml.replace("api.default.svc.cluster.local", "<script>.svc")),
    );
    expect(badName.message).toContain("a DNS name");
    const own = errorOf(() => parseScenario(yaml.replace("10.96.0.99", "10.96.0.10")));
    expect(own.message).toContain("the Service's own ClusterIP");
  });
});

describe("cluster DNS zone", () => {
  const scn = parseScenario(yaml);
  it("answers existing Services, bent by the faults; keeps a deleted one with staleAnswers", () => {
    const state = initialState(scn);
    const first = clusterDnsZone(scn, state, scn.faults.dns, null);
    expect(first.records).toEqual({
      "api.default.svc.cluster.local": { a: ["10.96.0.99"] },
      "kube-dns.kube-system.svc.cluster.local": { a: ["10.96.0.250"] },
    });
    state.services.delete("kube-system/kube-dns");
    const later = clusterDnsZone(scn, state, scn.faults.dns, first);
    expect(later.records["kube-dns.kube-system.svc.cluster.local"]).toEqual({ a: ["10.96.0.250"] });
    const honest = clusterDnsZone(scn, state, null, first);
    expect(Object.keys(honest.records).sort()).toEqual([
      "api.default.svc.cluster.local",
      "web.default.svc.cluster.local",
    ]);
  });

  it("maps names to Services", () => {
    expect(serviceOfDnsName("API.default.svc.cluster.local.", "cluster.local")).toBe("default/api");
    expect(serviceOfDnsName("p.api.default.svc.cluster.local", "cluster.local")).toBeNull();
    expect(serviceOfDnsName("example.com", "cluster.local")).toBeNull();
  });
});

describe("DNS server answers", () => {
  const zone: DnsZone = {
    ttl: 7,
    records: {
      "api.default.svc.cluster.local": { a: ["10.96.0.10"] },
      "ext.default.svc.cluster.local": { cname: "api.default.svc.cluster.local" },
    },
  };
  const decode = (buf: Buffer) =>
    dns.decode(buf) as unknown as dnsPacket.Packet & {
      rcode: string;
      flag_aa: boolean;
      flag_rd: boolean;
    };

  it("answers A for a known name, whatever its case, echoing id and question", () => {
    const result = answerQuery(query("Api.Default.svc.cluster.local."), zone);
    const reply = decode(result?.response as Buffer);
    expect(reply).toMatchObject({ type: "response", id: 4711, rcode: "NOERROR" });
    expect(reply.flag_aa).toBe(true);
    expect(reply.flag_rd).toBe(true);
    expect(reply.questions?.[0]?.name).toBe("Api.Default.svc.cluster.local");
    expect(reply.answers).toMatchObject([{ type: "A", data: "10.96.0.10", ttl: 7 }]);
    expect(result?.log).toEqual({
      id: 4711,
      qname: "Api.Default.svc.cluster.local",
      qtype: "A",
      rcode: "NOERROR",
      answers: ["A 10.96.0.10"],
    });
  });

  it("says NXDOMAIN for unknown names, NODATA for AAAA, SERVFAIL without a zone", () => {
    expect(
      decode(answerQuery(query("web.default.svc.cluster.local"), zone)?.response as Buffer),
    ).toMatchObject({ rcode: "NXDOMAIN", answers: [] });
    expect(
      decode(answerQuery(query("api.default.svc.cluster.local", "AAAA"), zone)?.response as Buffer),
    ).toMatchObject({ rcode: "NOERROR", answers: [] });
    expect(
      decode(answerQuery(query("api.default.svc.cluster.local"), null)?.response as Buffer),
    ).toMatchObject({ rcode: "SERVFAIL" });
  });

  it("follows a CNAME inside the zone", () => {
    const reply = decode(
      answerQuery(query("ext.default.svc.cluster.local"), zone)?.response as Buffer,
    );
    expect(reply.answers?.map((a) => [a.type, (a as { data: unknown }).data])).toEqual([
      ["CNAME", "api.default.svc.cluster.local"],
      ["A", "10.96.0.10"],
    ]);
  });

  it("drops what is not a DNS query", () => {
    expect(answerQuery(Buffer.from("<script>alert(1)</script>"), zone)).toBeNull();
    expect(answerQuery(Buffer.alloc(3), zone)).toBeNull();
    const response = dns.encode({ type: "response", id: 1, questions: [] });
    expect(answerQuery(response, zone)).toBeNull();
  });
});

describe("DNS server and resolver over loopback", () => {
  it("answer each query from the zone file as it is at that moment, and log it", async () => {
    const file = join(work, "zone.json");
    const write = (z: DnsZone) => writeFileSync(file, JSON.stringify(z));
    write({ ttl: 5, records: { "api.default.svc.cluster.local": { a: ["10.96.0.10"] } } });
    const logs: DnsServerLog[] = [];
    const server = await startDnsServer({
      name: "coredns",
      host: "127.0.0.1",
      port: 0,
      zone: file,
      onQuery: (l) => logs.push(l),
    });
    try {
      const common = { server: "127.0.0.1", port: server.port, bind: "127.0.0.1", timeoutMs: 2000 };
      const ask = (name: string) =>
        resolveNames({ ...common, name, qtype: "A", count: 2, rate: 100 });
      const before = await ask("api.default.svc.cluster.local");
      write({ ttl: 5, records: {} });
      const after = await ask("api.default.svc.cluster.local");
      expect(before.map((r) => [r.rcode, r.answers])).toEqual([
        ["NOERROR", ["A 10.96.0.10"]],
        ["NOERROR", ["A 10.96.0.10"]],
      ]);
      expect(after.map((r) => r.rcode)).toEqual(["NXDOMAIN", "NXDOMAIN"]);
      // New socket per query; the server's log names the client port and the query id.
      const records = [...before, ...after];
      expect(new Set(records.map((r) => r.client)).size).toBe(4);
      expect(logs.map((l) => `${l.peer} ${l.id}`)).toEqual(
        records.map((r) => `${r.client} ${r.id}`),
      );
      expect(logs[0]).toMatchObject({ pod: "coredns", local: `127.0.0.1:${server.port}` });
    } finally {
      await server.close();
    }
  });

  it("records an unanswered query as ETIMEDOUT", async () => {
    const port = await freePort();
    const [r] = await resolveNames({
      server: "127.0.0.1",
      port,
      bind: "127.0.0.1",
      timeoutMs: 300,
      name: "x.default.svc.cluster.local",
      qtype: "A",
      count: 1,
      rate: 1,
    });
    // Nothing listens: the kernel's port unreachable arrives as ECONNREFUSED.
    expect(r?.answered).toBe(false);
    expect(["ECONNREFUSED", "ETIMEDOUT"]).toContain(r?.error);
  });
});

describe("dns findings the lab expects", () => {
  const scn = parseScenario(yaml);
  const lookup = (name: string, start: number, rcode: string, answers: string[]): TruthLookup => ({
    connection: null,
    step: 1,
    clientName: "ca",
    node: "n1",
    name,
    qtype: "A",
    id: 1,
    start,
    end: start + 0.01,
    answered: true,
    rcode,
    answers,
    answeredBy: "coredns",
  });
  const deleted: LabEvent = {
    kind: "deleteService",
    service: "default/api",
    pod: null,
    time: 100,
    appliedOn: ["n1", "n2"],
    notAppliedOn: [],
  };
  it("expects each fault shown outside the grace window, and nothing inside it", () => {
    const { findings, notes } = dnsFindings(
      scn,
      [
        lookup("api.default.svc.cluster.local", 50, "NOERROR", ["A 10.96.0.99"]),
        lookup("web.default.svc.cluster.local", 50, "NXDOMAIN", []),
        lookup("api.default.svc.cluster.local", 103, "NOERROR", ["A 10.96.0.10"]),
        lookup("api.default.svc.cluster.local", 105, "NOERROR", ["A 10.96.0.10"]),
        lookup("gone.default.svc.cluster.local", 50, "NXDOMAIN", []),
      ],
      [deleted],
    );
    expect(findings.map((f) => [f.service, f.severity])).toEqual([
      ["default/api", "error"],
      ["default/web", "warning"],
    ]);
    // Stale answers 3 and 5 s after the deletion are within grace + margin: not expected.
    expect(notes).toEqual([
      "dns fault staleAnswers: no lookup of a deleted Service more than 5 s after its deletion",
    ]);
    const late = dnsFindings(
      scn,
      [lookup("api.default.svc.cluster.local", 110, "NOERROR", ["A 10.96.0.10"])],
      [deleted],
    );
    expect(late.findings).toMatchObject([
      { check: "dns", service: "default/api", severity: "warning", node: null },
    ]);
  });
});
