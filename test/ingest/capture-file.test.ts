import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { DnsRecord, LegRecord, TranslationRecord } from "../../src/flow/types.js";
import {
  type CaptureInterfaceInfo,
  ingestCaptureFile,
  readHead,
  SLL2_IFINDEX_SPAN,
  sniffCaptureFormat,
} from "../../src/ingest/capture-file.js";
import { InputError } from "../../src/util/errors.js";

const fixtures = join(resolve(import.meta.dirname, "..", ".."), "test", "fixtures", "captures");

async function ingest(name: string) {
  const legs: LegRecord[] = [];
  const translations: TranslationRecord[] = [];
  const dns: DnsRecord[] = [];
  const interfaces: CaptureInterfaceInfo[] = [];
  const summary = await ingestCaptureFile(join(fixtures, name), {
    interfaces: (l) => interfaces.push(...l),
    leg: (r) => legs.push(r),
    translation: (r) => translations.push(r),
    dns: (r) => dns.push(r),
  });
  return { legs, translations, dns, interfaces, summary };
}

function hasTshark(): boolean {
  try {
    execFileSync("sh", ["-c", "command -v tshark"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

/** Conversations tshark counts (`-z conv,tcp` / `conv,udp`), optionally under a display filter. */
function tsharkConversations(file: string, proto: "tcp" | "udp", filter?: string): number {
  const z = filter === undefined ? `conv,${proto}` : `conv,${proto},${filter}`;
  const out = execFileSync("tshark", ["-q", "-r", join(fixtures, file), "-z", z], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  return out.split("\n").filter((l) => l.includes("<->")).length;
}

const arrow = (t: TranslationRecord) =>
  `${t.kind} ${t.pre.srcIp}:${t.pre.dstIp}:${t.pre.dstPort} => ${t.post.srcIp}:${t.post.dstIp}:${t.post.dstPort}`;

describe("ingestCaptureFile on real captures", () => {
  it("sniffs and summarises an SLL2 capture", async () => {
    expect(sniffCaptureFormat(readHead(join(fixtures, "node-any.pcap")))).toBe("pcap");
    const { summary, interfaces } = await ingest("node-any.pcap");
    expect(summary).toMatchObject({
      format: "pcap",
      compressed: false,
      linkTypes: [276],
      packets: 161,
      anomalies: {},
      warnings: [],
    });
    expect(summary.lastTs! - summary.firstTs!).toBeGreaterThan(1);
    // One interface per kernel ifindex seen: n-eth0 (2) and n-pod (3).
    expect(interfaces.map((i) => i.id).sort()).toEqual([2, 3]);
    expect(SLL2_IFINDEX_SPAN).toBeGreaterThan(65535);
  });

  it("finds exactly the DNAT, NodePort (same interface) and midway-changed translations (SLL2)", async () => {
    for (const name of ["node-any.pcap", "node-any-sll.pcap"]) {
      const { translations } = await ingest(name);
      const got = translations.map(arrow).sort();
      expect(got, name).toEqual(
        [
          "dnat 10.10.1.2:10.96.0.1:80 => 10.10.1.2:10.10.2.2:8080",
          "dnat 10.10.1.2:10.96.0.1:80 => 10.10.1.2:10.10.2.2:8080",
          "dnat 10.10.1.2:10.96.0.1:80 => 10.10.1.2:10.10.2.2:8080",
          "both 10.10.1.2:10.10.1.1:30080 => 10.10.1.1:10.10.1.3:8080",
          "both 10.10.1.2:10.10.1.1:30080 => 10.10.1.1:10.10.1.3:8080",
          "dnat 10.10.1.2:10.96.0.10:53 => 10.10.1.2:10.10.2.2:53",
          "dnat 10.10.1.2:10.96.0.10:53 => 10.10.1.2:10.10.2.3:53",
        ].sort(),
      );
      // Requests and replies of one connection aggregate into one record.
      for (const t of translations.filter((x) => x.pre.proto === 6)) expect(t.packets).toBe(10);
      for (const t of translations.filter((x) => x.pre.proto === 17)) expect(t.packets).toBe(6);
      // The midway change: the second endpoint's translation starts after the first one ends.
      const [a, b] = translations
        .filter((x) => x.pre.proto === 17)
        .sort((x, y) => x.firstTs - y.firstTs);
      expect(a!.post.dstIp).toBe("10.10.2.2");
      expect(b!.post.dstIp).toBe("10.10.2.3");
      expect(b!.firstTs).toBeGreaterThan(a!.lastTs);
      if (name === "node-any.pcap") {
        const nodePort = translations.filter((x) => x.kind === "both");
        for (const t of nodePort) expect([t.interfaceIn, t.interfaceOut]).toEqual([2, 2]);
        const clusterIp = translations.filter((x) => x.pre.dstPort === 80);
        for (const t of clusterIp) expect([t.interfaceIn, t.interfaceOut]).toEqual([2, 3]);
      }
    }
  });

  it("without packet types, tells copies apart by interface only (dumpcap, two interfaces)", async () => {
    const { translations, interfaces } = await ingest("node-dumpcap.pcapng");
    expect(interfaces.map((i) => i.name)).toEqual(["n-eth0", "n-pod"]);
    expect(translations.map(arrow).sort()).toEqual(
      [
        "dnat 10.10.1.2:10.96.0.1:80 => 10.10.1.2:10.10.2.2:8080",
        "dnat 10.10.1.2:10.96.0.1:80 => 10.10.1.2:10.10.2.2:8080",
        "dnat 10.10.1.2:10.96.0.1:80 => 10.10.1.2:10.10.2.2:8080",
        "dnat 10.10.1.2:10.96.0.10:53 => 10.10.1.2:10.10.2.2:53",
        "dnat 10.10.1.2:10.96.0.10:53 => 10.10.1.2:10.10.2.3:53",
      ].sort(),
    );
    for (const t of translations) expect([t.interfaceIn, t.interfaceOut]).toEqual([0, 1]);
  });

  it("finds no translation on a single interface without packet types", async () => {
    for (const name of ["node-eth0-nano.pcap", "node-eth0-nano.pcap.gz"]) {
      const { translations, summary } = await ingest(name);
      expect(translations).toEqual([]);
      expect(summary.compressed).toBe(name.endsWith(".gz"));
      expect(summary.packets).toBe(103);
    }
  });

  it("legs carry Zeek states, directions, Community IDs and ICMP errors", async () => {
    const { legs } = await ingest("node-any.pcap");
    const vip = legs.filter((l) => l.respIp === "10.96.0.1");
    expect(vip).toHaveLength(3);
    for (const l of vip) {
      expect(l).toMatchObject({
        interfaceId: 2,
        proto: 6,
        origIp: "10.10.1.2",
        respPort: 80,
        connState: "SF",
        direction: "in",
      });
      expect(l.history).toMatch(/^ShA/);
      expect(l.communityId).toMatch(/^1:[A-Za-z0-9+/]{27}=$/);
      expect(l.origPackets + l.respPackets).toBe(10);
    }
    const pod = legs.filter((l) => l.respIp === "10.10.2.2" && l.respPort === 8080);
    expect(pod.every((l) => l.direction === "out" && l.interfaceId === 3)).toBe(true);
    const rej = legs.filter((l) => l.respPort === 9999);
    expect(rej.map((l) => l.connState)).toEqual(["REJ", "REJ"]);
    const unreachable = legs.filter((l) => l.respPort === 9998);
    expect(unreachable).toHaveLength(2);
    for (const l of unreachable) expect(l.icmpErrors).toEqual({ "3/3": 1 });
    // The same connection seen on two interfaces has the same Community ID.
    expect(new Set(rej.map((l) => l.communityId)).size).toBe(1);
  });

  it("reads DNS queries and answers", async () => {
    const { dns } = await ingest("node-eth0-nano.pcap");
    const answers = dns.filter((d) => d.isResponse);
    expect(answers).toHaveLength(6);
    expect(answers.map((d) => d.answers[0]?.data)).toEqual([
      "10.10.2.2",
      "10.10.2.2",
      "10.10.2.2",
      "10.10.2.3",
      "10.10.2.3",
      "10.10.2.3",
    ]);
    expect(answers[0]).toMatchObject({
      clientIp: "10.10.1.2",
      clientPort: 40053,
      serverIp: "10.96.0.10",
      serverPort: 53,
      qname: "svc.example",
      qtype: "A",
      rcode: "NOERROR",
    });
  });

  it.skipIf(!hasTshark())(
    "leg counts agree with tshark -z conv,tcp / conv,udp per interface",
    async () => {
      const cases: { file: string; perInterface: [number, string][] }[] = [
        { file: "node-eth0-nano.pcap", perInterface: [[0, "frame"]] },
        {
          file: "node-dumpcap.pcapng",
          perInterface: [
            [0, "frame.interface_id==0"],
            [1, "frame.interface_id==1"],
          ],
        },
        {
          file: "node-any.pcap",
          perInterface: [
            [2, "sll.ifindex==2"],
            [3, "sll.ifindex==3"],
          ],
        },
      ];
      for (const { file, perInterface } of cases) {
        const { legs } = await ingest(file);
        for (const [ifId, filter] of perInterface) {
          for (const [proto, num] of [
            ["tcp", 6],
            ["udp", 17],
          ] as const) {
            const ours = legs.filter((l) => l.interfaceId === ifId && l.proto === num).length;
            expect(ours, `${file} ${filter} ${proto}`).toBe(
              tsharkConversations(file, proto, filter),
            );
            expect(ours).toBeGreaterThan(0);
          }
        }
      }
    },
  );
});

describe("ingestCaptureFile on bad and partial files", () => {
  const tmp = mkdtempSync(join(tmpdir(), "svt-cap-ingest-"));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const sink = { interfaces() {}, leg() {}, translation() {}, dns() {} };

  it("a file cut short returns what came before the cut, with a warning", async () => {
    const whole = readFileSync(join(fixtures, "node-any.pcap"));
    const path = join(tmp, "cut.pcap");
    writeFileSync(path, whole.subarray(0, whole.length - 50));
    const s = await ingestCaptureFile(path, sink);
    expect(s.packets).toBeGreaterThan(100);
    expect(s.packets).toBeLessThan(161);
    expect(s.warnings).toHaveLength(1);
    expect(s.warnings[0]).toMatch(/^file cut short at byte offset \d+: \d+ records read/);
  });

  it("not a capture: InputError naming the file and its first bytes", async () => {
    const path = join(tmp, "rules.txt");
    writeFileSync(path, "*nat\n:PREROUTING ACCEPT [0:0]\n");
    await expect(ingestCaptureFile(path, sink)).rejects.toBeInstanceOf(InputError);
    await expect(ingestCaptureFile(path, sink)).rejects.toThrow(
      `${path}: byte offset 0: not a pcap or pcapng capture: first bytes 2a 6e 61 74`,
    );
  });

  it("reports progress with bytes read and packets", async () => {
    const calls: [number, number][] = [];
    await ingestCaptureFile(join(fixtures, "node-any.pcap"), sink, {
      onProgress: (b, n) => calls.push([b, n]),
    });
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.at(-1)).toEqual([statSync(join(fixtures, "node-any.pcap")).size, 161]);
  });
});
