import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timeFromFileName } from "../../src/ingest/naming.js";
import { collect, fileTime, parseDurationSeconds } from "../../src/lab/collect.js";

const isRoot = process.getuid?.() === 0;
const hasTools = ["tcpdump", "iptables-save", "ip"].every(
  (t) => spawnSync("sh", ["-c", `command -v ${t}`]).status === 0,
);
const root = join(import.meta.dirname, "..", "..");
const binary = join(root, "dist", "src", "cli", "main.js");

describe("collect helpers", () => {
  it("parses durations", () => {
    expect(parseDurationSeconds("60s")).toBe(60);
    expect(parseDurationSeconds("2m")).toBe(120);
    expect(parseDurationSeconds("1.5")).toBe(1.5);
    expect(parseDurationSeconds("500ms")).toBe(0.5);
    expect(parseDurationSeconds("1h")).toBe(3600);
    expect(parseDurationSeconds("soon")).toBeNull();
    expect(parseDurationSeconds("-1s")).toBeNull();
  });

  it("names files with a compact UTC time that ingest reads back", () => {
    const d = new Date("2026-11-25T16:20:07.345Z");
    expect(fileTime(d)).toBe("20261125T162007Z");
    expect(timeFromFileName(`iptables-${fileTime(d)}.save`)).toBe(
      Date.parse("2026-11-25T16:20:07Z") / 1000,
    );
  });
});

describe("collect with every tool missing", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "svt-gen-collect-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("reports the missing tools and still writes bundle.json and collect.log", async () => {
    const lines: string[] = [];
    const result = await collect({
      node: "n1",
      durationSeconds: 0,
      outDir: dir,
      capture: "tcpdump",
      searchPath: [join(dir, "no-such-bin")],
      onLog: (l) => lines.push(l),
    });
    expect(result.missing).toEqual(
      expect.arrayContaining([
        "ip",
        "tcpdump",
        "iptables-save",
        "ip6tables-save",
        "nft",
        "conntrack",
        "kubectl",
      ]),
    );
    expect(result.problems).toContain("no packet capture was taken");
    const bundle = JSON.parse(readFileSync(join(dir, "bundle.json"), "utf8"));
    expect(bundle.nodes[0].name).toBe("n1");
    expect(bundle.missing).toEqual(result.missing);
    expect(readFileSync(join(dir, "collect.log"), "utf8")).toMatch(
      /missing: tcpdump is not installed/,
    );
    expect(lines.some((l) => l.includes("missing: conntrack"))).toBe(true);
  });
});

describe.skipIf(!isRoot || !hasTools)(
  "svctrace collect in a network namespace (needs root, tcpdump, iptables)",
  () => {
    const NS = `svt-gen-c${process.pid}`;
    let dir = "";
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "svt-gen-collect-"));
      execFileSync("ip", ["netns", "add", NS]);
      execFileSync("ip", ["netns", "exec", NS, "ip", "link", "set", "lo", "up"]);
      // A node address (documentation range, never routed anywhere) for bundle.json to list.
      execFileSync("ip", [
        "netns",
        "exec",
        NS,
        "ip",
        "link",
        "add",
        "d0",
        "type",
        "veth",
        "peer",
        "name",
        "d1",
      ]);
      execFileSync("ip", ["netns", "exec", NS, "ip", "addr", "add", "192.0.2.10/24", "dev", "d0"]);
      execFileSync("ip", ["netns", "exec", NS, "ip", "link", "set", "d0", "up"]);
      // Something to dump: a NAT rule, so iptables-save has content in this fresh namespace.
      execFileSync("ip", [
        "netns",
        "exec",
        NS,
        "iptables",
        "-t",
        "nat",
        "-A",
        "OUTPUT",
        "-d",
        "127.0.0.9",
        "-j",
        "ACCEPT",
      ]);
    });
    afterAll(() => {
      spawnSync("ip", ["netns", "delete", NS]);
      rmSync(dir, { recursive: true, force: true });
    });

    it("writes the bundle layout with a capture that holds the traffic sent during the run", async () => {
      const out = join(dir, "bundle");
      // UDP datagrams on the namespace's loopback all through the run: started first, because
      // node start-up on a loaded machine can take longer than the capture lasts.
      const sender = spawn(
        "ip",
        [
          "netns",
          "exec",
          NS,
          "node",
          "-e",
          "const s=require('dgram').createSocket('udp4');let i=0;setInterval(()=>s.send('svt-datagram-'+i++,9,'127.0.0.1'),20);",
        ],
        { stdio: "ignore" },
      );
      const child = spawn(
        "ip",
        [
          "netns",
          "exec",
          NS,
          "node",
          binary,
          "collect",
          "--node",
          "n1",
          "--duration",
          "2s",
          "--out",
          out,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
      child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      const code = await new Promise<number | string | null>((resolve) =>
        child.on("close", (c, sig) => resolve(c ?? sig)),
      );
      sender.kill();
      expect(code, stderr).toBe(0);
      expect(stdout).toMatch(/collected \d+ files/);

      const nodeDir = join(out, "nodes", "n1");
      const names = readdirSync(nodeDir).sort();
      expect(names).toContain("addr.json");
      expect(names).toContain("capture.pcap");
      expect(names.filter((n) => /^iptables-\d{8}T\d{6}Z\.save$/.test(n))).toHaveLength(2);
      expect(names.filter((n) => /^ip6tables-\d{8}T\d{6}Z\.save$/.test(n))).toHaveLength(2);
      expect(names.filter((n) => /^conntrack-\d{8}T\d{6}Z\.txt$/.test(n))).toHaveLength(2);
      const save = readFileSync(
        join(nodeDir, names.find((n) => n.startsWith("iptables-")) ?? ""),
        "utf8",
      );
      expect(save).toContain("-A OUTPUT -d 127.0.0.9/32 -j ACCEPT");
      // The conntrack dump is recognisable even when the table is small.
      const ct = readFileSync(
        join(nodeDir, names.find((n) => n.startsWith("conntrack-")) ?? ""),
        "utf8",
      );
      expect(ct).toMatch(/flow entries have been shown/);
      const addr = JSON.parse(readFileSync(join(nodeDir, "addr.json"), "utf8")) as {
        ifname: string;
      }[];
      expect(addr.map((a) => a.ifname)).toContain("lo");

      const pcap = readFileSync(join(nodeDir, "capture.pcap"));
      expect(pcap.readUInt32LE(0)).toBe(0xa1b2c3d4);
      // LINKTYPE_LINUX_SLL2: the interface index of every packet is kept.
      expect(pcap.readUInt32LE(20)).toBe(276);
      // The datagrams sent during the run are in the file.
      expect(pcap.includes(Buffer.from("svt-datagram-")), stderr).toBe(true);

      const bundle = JSON.parse(readFileSync(join(out, "bundle.json"), "utf8"));
      expect(bundle.nodes[0]).toMatchObject({ name: "n1" });
      expect(bundle.nodes[0].addresses).toEqual(["192.0.2.10"]);
      expect(bundle.capture.engine).toBe("tcpdump");
      expect(bundle.capture.packets).toBeGreaterThanOrEqual(5);
      expect(bundle.capture.droppedByKernel).toBe(0);
      expect(existsSync(join(out, "collect.log"))).toBe(true);

      // The bundle goes into `svctrace ingest DIR` without flags.
      const ingest = spawnSync("node", [binary, "ingest", "--db", join(dir, "trace.db"), out], {
        encoding: "utf8",
      });
      expect(ingest.status, ingest.stderr).toBe(0);
      expect(ingest.stdout + ingest.stderr).toMatch(/capture\.pcap: pcap, node n1/);
      expect(ingest.stdout + ingest.stderr).toMatch(
        /iptables-\d{8}T\d{6}Z\.save: iptables-save, node n1/,
      );
    });
  },
);

describe("svctrace collect command line", () => {
  it("rejects a bad duration with exit code 2 and a one-line reason", () => {
    const r = spawnSync(
      "node",
      [binary, "collect", "--duration", "soon", "--out", "/nonexistent/x"],
      {
        encoding: "utf8",
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--duration "soon": expected e\.g\. 60s/);
  });

  it("rejects an unknown capture engine", () => {
    const r = spawnSync(
      "node",
      [binary, "collect", "--capture", "wireshark", "--out", "/nonexistent/x"],
      {
        encoding: "utf8",
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--capture "wireshark"/);
  });
});
