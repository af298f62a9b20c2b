import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ingestPaths } from "../../src/ingest/ingest.js";
import { type Db, openDb } from "../../src/store/db.js";
import {
  listCaptures,
  listConntrack,
  listDocuments,
  listEndpoints,
  listInventorySnapshots,
  listLegs,
  listRuleSets,
  listRules,
  listServices,
  listTranslations,
} from "../../src/store/queries.js";
import { InputError } from "../../src/util/errors.js";

const fixtures = join(import.meta.dirname, "..", "fixtures", "ingest");
const bundle = join(import.meta.dirname, "..", "..", "traces", "00-interim-dnat");

let dir: string;
let db: Db;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "svctrace-ingest-"));
  db = openDb(join(dir, "t.db"));
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Every row of every table, to compare a database before and after. */
function snapshot(d: Db): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  const names = d.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
    name: string;
  }[];
  for (const { name } of names) out[name] = d.prepare(`SELECT * FROM "${name}"`).all();
  return out;
}

const place = (name: string, as = name): string => {
  const p = join(dir, as);
  copyFileSync(join(fixtures, name), p);
  return p;
};

describe("ingestPaths: captures", () => {
  it("stores a real tcpdump -i any capture: legs on both sides of the DNAT and the translations", async () => {
    const s = await ingestPaths(db, [place("node1-dnat.pcap")]);
    expect(s).toMatchObject({ files: 1, failed: 0, packets: 143 });
    const [cap] = listCaptures(db);
    expect(cap).toMatchObject({
      node: "node1-dnat",
      format: "pcap",
      packets: 143,
      linkTypes: [276],
    });
    const tcp = listLegs(db, { proto: 6 });
    // Five requests, each seen pre-DNAT (to the VIP) and post-DNAT (to the pod).
    expect(tcp.filter((l) => l.respIp === "10.96.0.10" && l.respPort === 80)).toHaveLength(5);
    expect(tcp.filter((l) => l.respIp === "10.244.1.5" && l.respPort === 8080)).toHaveLength(5);
    expect(tcp.every((l) => l.connState === "SF" && l.node === "node1-dnat")).toBe(true);
    const tr = listTranslations(db, { preDstIp: "10.96.0.10" });
    expect(tr).toHaveLength(5);
    expect(tr[0]).toMatchObject({ kind: "dnat", post: { dstIp: "10.244.1.5", dstPort: 8080 } });
    expect(s.legs).toBe(listLegs(db).length);
    // The hash computed on a worker thread alongside the ingest is the file's.
    const sha = createHash("sha256")
      .update(readFileSync(join(fixtures, "node1-dnat.pcap")))
      .digest("hex");
    expect(cap?.sha256).toBe(sha);
    expect(db.prepare("SELECT identity, sha256 FROM inputs").all()).toEqual([
      { identity: sha, sha256: sha },
    ]);
  });

  it("reads gzip-compressed captures", async () => {
    const p = join(dir, "n2.pcap.gz");
    writeFileSync(p, gzipSync(readFileSync(join(fixtures, "node1-dnat.pcap"))));
    const s = await ingestPaths(db, [p], { node: "n2" });
    expect(s.packets).toBe(143);
    expect(listCaptures(db)[0]).toMatchObject({ compressed: true, node: "n2" });
  });
});

describe("ingestPaths: idempotence and atomicity", () => {
  it("re-ingesting the same content, even under another name, is a no-op with a message", async () => {
    await ingestPaths(db, [place("node1-dnat.pcap"), place("node1.conntrack")]);
    const before = snapshot(db);
    const again = await ingestPaths(db, [
      place("node1-dnat.pcap", "renamed.pcap"),
      place("node1.conntrack"),
    ]);
    expect(again).toMatchObject({ files: 0, duplicates: 2, legs: 0 });
    expect(again.results[0]?.message).toMatch(
      /already in the database \(same content as .*node1-dnat\.pcap\)/,
    );
    const after = snapshot(db);
    expect(after).toEqual(before);
  });

  it("the same dump on another node, or at another time, is another snapshot", async () => {
    const text = readFileSync(join(fixtures, "node1.conntrack"));
    for (const [node, name] of [
      ["n1", "conntrack-20261125T160000Z.txt"],
      ["n2", "conntrack-20261125T160000Z.txt"],
      ["n1", "conntrack-20261125T160500Z.txt"],
    ] as const) {
      mkdirSync(join(dir, "nodes", node), { recursive: true });
      writeFileSync(join(dir, "nodes", node, name), text);
    }
    const s = await ingestPaths(db, [join(dir, "nodes")]);
    expect(s).toMatchObject({ files: 3, duplicates: 0, conntrackEntries: 15 });
    const again = await ingestPaths(db, [join(dir, "nodes")]);
    expect(again).toMatchObject({ files: 0, duplicates: 3 });
    expect(again.results[0]?.message).toMatch(/same content, node and time/);
  });

  it("a file that fails after rows were written leaves the database as it was", async () => {
    await ingestPaths(db, [place("node1.iptables")]);
    const before = snapshot(db);
    // Three good entries are written before line 4 fails.
    const good = readFileSync(join(fixtures, "node1.conntrack"), "utf8")
      .split("\n")
      .slice(0, 3)
      .join("\n");
    const bad = join(dir, "n1.conntrack");
    // A line cut short: the original tuple only.
    writeFileSync(
      bad,
      `${good}\ntcp      6 118 TIME_WAIT src=10.0.0.1 dst=10.96.0.10 sport=1 dport=80 mark=0\n`,
    );
    const s = await ingestPaths(db, [bad]);
    expect(s).toMatchObject({ failed: 1, files: 0 });
    expect(s.results[0]?.message).toMatch(
      /n1\.conntrack: line 4: an entry needs an original and a reply/,
    );
    expect(snapshot(db)).toEqual(before);
  });

  it("a capture cut by an impossible record length rolls back whole, and can be ingested once fixed", async () => {
    const good = readFileSync(join(fixtures, "node1-dnat.pcap"));
    const corrupt = Buffer.concat([
      good,
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0xff, 0xff, 0x7f, 0xf0, 0xff, 0xff, 0x7f]),
      Buffer.alloc(64),
    ]);
    const bad = join(dir, "cut.pcap");
    writeFileSync(bad, corrupt);
    const before = snapshot(db);
    const s = await ingestPaths(db, [bad]);
    expect(s.failed).toBe(1);
    expect(s.results[0]?.message).toMatch(/byte offset/);
    expect(snapshot(db)).toEqual(before);
    // Nothing of the failed file was remembered: the good content still goes in.
    expect((await ingestPaths(db, [place("node1-dnat.pcap")])).files).toBe(1);
  });

  it("an explicitly named file of unknown kind is bad input; in a directory it is skipped", async () => {
    const junk = join(dir, "notes.txt");
    writeFileSync(junk, "hello\n");
    const s = await ingestPaths(db, [junk]);
    expect(s.failed).toBe(1);
    expect(s.results[0]?.message).toMatch(/notes\.txt: not a capture, rule dump/);
    const sub = join(dir, "sub");
    mkdirSync(sub);
    writeFileSync(join(sub, "README.md"), "# nothing\n");
    const s2 = await ingestPaths(db, [sub]);
    expect(s2).toMatchObject({ skipped: 1, failed: 0 });
  });

  it("a missing path is an InputError naming it", async () => {
    await expect(ingestPaths(db, [join(dir, "nope.pcap")])).rejects.toThrow(InputError);
    await expect(ingestPaths(db, [join(dir, "nope.pcap")])).rejects.toThrow(
      /nope\.pcap: no such file/,
    );
  });
});

describe("ingestPaths: rule dumps, conntrack and inventory", () => {
  it("takes the dump time from the iptables-save header, --taken-at over everything", async () => {
    const p = place("node1.iptables", "n1.iptables");
    await ingestPaths(db, [p]);
    const [rs] = listRuleSets(db);
    expect(rs).toMatchObject({
      node: "n1",
      kind: "iptables-save",
      family: "ipv4",
      generator: expect.stringMatching(/^iptables-save v1\.8/),
    });
    expect(rs?.takenAt).toBeGreaterThan(1.7e9);
    const rules = listRules(db, rs!.id);
    expect(rules.map((r) => `${r.table} ${r.chain} ${r.index} ${r.target}`)).toEqual([
      "nat PREROUTING 1 KUBE-SERVICES",
      "nat KUBE-SEP-DEMO 1 DNAT",
      "nat KUBE-SERVICES 1 KUBE-SVC-DEMO",
      "nat KUBE-SVC-DEMO 1 KUBE-SEP-DEMO",
    ]);
    expect(rules[2]?.comment).toBe("demo/web:http cluster IP");

    const db2 = openDb(join(dir, "t2.db"));
    await ingestPaths(db2, [p], { takenAt: 1000, node: "other" });
    expect(listRuleSets(db2)[0]).toMatchObject({ takenAt: 1000, node: "other" });
    db2.close();
  });

  it("prefers a bundle file name's finer time when it names the header's second", async () => {
    const nodeDir = join(dir, "nodes", "n9");
    mkdirSync(nodeDir, { recursive: true });
    const text = readFileSync(join(fixtures, "node1.iptables"), "utf8");
    const header = /on \w+ (\w+) +(\d+) (\d\d):(\d\d):(\d\d) (\d{4})/.exec(text)!;
    const months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    const t =
      Date.UTC(
        Number(header[6]),
        months.indexOf(header[1]!) / 3,
        Number(header[2]),
        Number(header[3]),
        Number(header[4]),
        Number(header[5]),
      ) / 1000;
    const compact = new Date(t * 1000 + 250).toISOString().replace(/[-:]/g, "");
    writeFileSync(join(nodeDir, `iptables-${compact}.save`), text);
    // Same content, another time in the name: the header wins.
    writeFileSync(join(nodeDir, "iptables-20200101T000000Z.save"), `${text}\n`);
    await ingestPaths(db, [join(dir, "nodes")]);
    expect(
      listRuleSets(db)
        .map((r) => [r.node, r.takenAt])
        .sort(),
    ).toEqual([
      ["n9", t],
      ["n9", t + 0.25],
    ]);
  });

  it("stores conntrack tuples, and warns when a snapshot has no time", async () => {
    const s = await ingestPaths(db, [place("node1.conntrack")]);
    expect(s.warnings).toEqual([
      expect.stringMatching(/node1\.conntrack: no time in the file or its name; give --taken-at/),
    ]);
    const ct = listConntrack(db);
    expect(ct).toHaveLength(5);
    expect(ct[0]).toMatchObject({
      node: "node1",
      proto: 6,
      state: "TIME_WAIT",
      origDst: "10.96.0.10",
      origDport: 80,
      replySrc: "10.244.1.5",
      replySport: 8080,
      flags: ["ASSURED"],
      mark: 0,
      takenAt: null,
    });
  });

  it("ingests a whole bundle directory with no flags: nodes from nodes/<node>/, times from names", async () => {
    const s = await ingestPaths(db, [bundle]);
    expect(s.failed).toBe(0);
    expect(s.warnings).toEqual([]);
    expect(listCaptures(db).map((c) => c.node)).toEqual(["node1"]);
    expect(listRuleSets(db)).toEqual([expect.objectContaining({ node: "node1" })]);
    expect(listConntrack(db).every((c) => c.node === "node1" && c.takenAt !== null)).toBe(true);
    const [snap] = listInventorySnapshots(db);
    expect(snap?.takenAt).not.toBeNull();
    expect(listServices(db, snap!.id)).toEqual([
      expect.objectContaining({
        namespace: "demo",
        name: "web",
        type: "ClusterIP",
        clusterIps: ["10.96.0.10"],
      }),
    ]);
    expect(listEndpoints(db, snap!.id)).toEqual([
      expect.objectContaining({
        service: "web",
        address: "10.244.1.5",
        port: 8080,
        ready: true,
        nodeName: "node1",
        target: "Pod/demo/web-0",
      }),
    ]);
    expect(listDocuments(db, "bundle-json")).toHaveLength(1);
  });
});
