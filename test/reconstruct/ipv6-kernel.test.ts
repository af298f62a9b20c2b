import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { analyze } from "../../src/checks/analyze.js";
import { ingestPaths } from "../../src/ingest/ingest.js";
import { generateIptablesRestore } from "../../src/lab/kubeproxy-gen.js";
import { startCapture } from "../../src/lab/tcpdump.js";
import { iterateConnections } from "../../src/store/analysis-schema.js";
import { openDb } from "../../src/store/db.js";
import { listRuleSets } from "../../src/store/queries.js";
import { ep, svc } from "../lab/gen-helpers.js";

// IPv6 Service traffic NATed by the real kernel: a client, a node and a pod namespace, the
// node running the generator's ip6tables rules. Captured on the node with tcpdump, ingested
// with the node's ip6tables-save and addresses, and analyzed: every connection is judged by the
// IPv6 rules and reaches the endpoint the kernel chose.

const isRoot = process.getuid?.() === 0;
const hasTools =
  spawnSync("ip6tables-restore", ["--version"]).status === 0 &&
  spawnSync("tcpdump", ["--version"]).status === 0;
const skipReason = !isRoot ? "needs root" : hasTools ? "" : "needs ip6tables-restore and tcpdump";
const P = `svt-v6${process.pid % 100000}`;
const NS = { client: `${P}c`, node: `${P}n`, pod: `${P}p` };
const VIP = "fd00:96::10";
const POD = "fd00:244:2::5";
const CLIENT = "fd00:244:1::10";
/** A second client address, outside the cluster CIDR: its connections are masqueraded. */
const OUTSIDER = "fd01::10";
const dir = mkdtempSync(join(tmpdir(), "svctrace-ipv6-kernel-"));

function sh(ns: string | null, ...argv: string[]): string {
  const full = ns === null ? argv : ["ip", "netns", "exec", ns, ...argv];
  return execFileSync(full[0] as string, full.slice(1), { encoding: "utf8", stdio: "pipe" });
}

function teardown(): void {
  for (const ns of Object.values(NS)) spawnSync("ip", ["netns", "delete", ns]);
}

function build(): void {
  teardown();
  for (const ns of Object.values(NS)) {
    sh(null, "ip", "netns", "add", ns);
    sh(ns, "ip", "link", "set", "lo", "up");
  }
  // client eth0 <-> node vc ; node vp <-> pod eth0
  const veth = (ns: string, peer: string) =>
    sh(
      null,
      "ip",
      "link",
      "add",
      "eth0",
      "netns",
      ns,
      "type",
      "veth",
      "peer",
      peer,
      "netns",
      NS.node,
    );
  veth(NS.client, "vc");
  veth(NS.pod, "vp");
  const up = (ns: string, dev: string, addr: string) => {
    sh(ns, "ip", "-6", "addr", "add", addr, "dev", dev, "nodad");
    sh(ns, "ip", "link", "set", dev, "up");
  };
  up(NS.client, "eth0", `${CLIENT}/64`);
  sh(NS.client, "ip", "-6", "addr", "add", `${OUTSIDER}/64`, "dev", "eth0", "nodad");
  up(NS.node, "vc", "fd00:244:1::1/64");
  sh(NS.node, "ip", "-6", "addr", "add", "fd01::1/64", "dev", "vc", "nodad");
  up(NS.node, "vp", "fd00:244:2::1/64");
  up(NS.pod, "eth0", `${POD}/64`);
  sh(NS.client, "ip", "-6", "route", "add", "default", "via", "fd00:244:1::1");
  sh(NS.pod, "ip", "-6", "route", "add", "default", "via", "fd00:244:2::1");
  sh(NS.node, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1");
  const rules = generateIptablesRestore(
    [
      svc("default", "web", VIP, { endpoints: [{ ...ep(POD, "n1"), port: 8080 }] }),
      svc("default", "other", "fd00:96::20", {}),
    ],
    { name: "n1", nodeIPs: ["fd00:244:1::1"], clusterCIDR: "fd00:244::/32" },
  );
  execFileSync("ip", ["netns", "exec", NS.node, "ip6tables-restore"], { input: rules });
}

describe.skipIf(!isRoot || !hasTools)(
  `IPv6 Service NAT by the kernel (${skipReason || "netns"})`,
  () => {
    const bundle = join(dir, "bundle");
    const nodeDir = join(bundle, "nodes", "n1");
    let answers: string[] = [];

    beforeAll(async () => {
      build();
      mkdirSync(nodeDir, { recursive: true });
      const server = spawn("ip", [
        "netns",
        "exec",
        NS.pod,
        process.execPath,
        "-e",
        "require('net').createServer((s) => s.end('web-1 ' + s.remoteAddress + '\\n')).listen(8080, '::', () => console.log('ready'))",
      ]);
      await new Promise<void>((resolve, reject) => {
        server.stdout.on("data", () => resolve());
        server.once("exit", (code) => reject(new Error(`server exited ${code}`)));
      });
      const capture = await startCapture(NS.node, join(nodeDir, "n1.pcap"));
      try {
        const client = `
        const net = require('net');
        (async () => {
          for (let i = 0; i < 6; i++) {
            const text = await new Promise((resolve, reject) => {
              let got = '';
              const from = i < 5 ? '${CLIENT}' : '${OUTSIDER}';
              const s = net.connect({ host: '${VIP}', port: 80, localAddress: from }, () => {});
              s.on('data', (d) => (got += d));
              s.on('end', () => resolve(got.trim()));
              s.on('error', reject);
            });
            console.log(text);
          }
        })().catch((e) => { console.error(String(e)); process.exit(1); });`;
        answers = sh(NS.client, process.execPath, "-e", client).trim().split("\n");
        // One connection to a Service without endpoints: the rules reject it.
        spawnSync("ip", [
          "netns",
          "exec",
          NS.client,
          process.execPath,
          "-e",
          "require('net').connect({host:'fd00:96::20',port:80}).on('error',()=>process.exit(0))",
        ]);
      } finally {
        await capture.stop();
        server.kill();
      }
      writeFileSync(join(nodeDir, "ip6tables-1.save"), sh(NS.node, "ip6tables-save"));
      writeFileSync(join(nodeDir, "addr.json"), sh(NS.node, "ip", "-j", "addr"));
    }, 60_000);

    afterAll(() => {
      teardown();
      rmSync(dir, { recursive: true, force: true });
    });

    it("judges each connection by the node's ip6tables rules, with the endpoint the kernel chose", async () => {
      // The endpoint saw the client itself, and the node's address for the outsider (masquerade).
      expect(answers).toEqual([...Array(5).fill(`web-1 ${CLIENT}`), "web-1 fd00:244:2::1"]);
      const db = openDb(join(dir, "t.db"));
      await ingestPaths(db, [bundle]);
      expect(listRuleSets(db).map((r) => r.family)).toEqual(["ipv6"]);
      const summary = analyze(db);
      const conns = [...iterateConnections(db)];
      db.close();
      const web = conns.filter((c) => c.service === "default/web:p80");
      expect(web).toHaveLength(6);
      const outsider = web.filter((c) => c.client.ip === OUTSIDER);
      expect(outsider).toHaveLength(1);
      expect(outsider[0]).toMatchObject({
        verdict: "consistent",
        endpoint: { ip: POD, port: 8080 },
        snat: { ip: "fd00:244:2::1" },
      });
      for (const c of web.filter((x) => x.client.ip === CLIENT)) {
        expect(c).toMatchObject({
          verdict: "consistent",
          node: "n1",
          hook: "prerouting",
          vip: { ip: VIP, port: 80 },
          endpoint: { ip: POD, port: 8080 },
          snat: null,
        });
        expect(c.candidates).toEqual([{ endpoint: `[${POD}]:8080`, probability: 1 }]);
      }
      expect(conns.filter((c) => c.service === "default/other:p80").map((c) => c.verdict)).toEqual([
        "rejected",
      ]);
      expect(summary.verdicts).toEqual({ consistent: 6, rejected: 1 });
    });
  },
);
