import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "dist", "src", "cli", "main.js");
const fixtures = join(root, "test", "fixtures", "ingest");

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "svctrace-cli-ingest-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: "utf8" });

describe("svctrace ingest", () => {
  it("ingests files into ./svctrace.db by default, prints a summary, exits 0", () => {
    copyFileSync(join(fixtures, "node1-dnat.pcap"), join(dir, "n1.pcap"));
    copyFileSync(join(fixtures, "node1.iptables"), join(dir, "n1.iptables"));
    const r = run("ingest", "n1.pcap", "n1.iptables");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ingested 2 files into svctrace\.db/);
    expect(r.stdout).toMatch(/packets\s+143/);
    expect(r.stdout).toMatch(/legs\s+\d+/);
    expect(r.stdout).toMatch(/translations\s+5/);
    expect(r.stdout).toMatch(/packets\/s/);
    expect(r.stderr).toMatch(/n1\.pcap: pcap, node n1, 143 packets/);
    // No progress line when stderr is not a terminal.
    expect(r.stderr).not.toMatch(/ETA/);
  });

  it("says so when the content is already there, and still exits 0", () => {
    const r = run("ingest", "--json", "n1.pcap");
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout) as {
      files: number;
      duplicates: number;
      results: { status: string; message: string }[];
    };
    expect(s).toMatchObject({ files: 0, duplicates: 1 });
    expect(s.results[0]?.message).toMatch(/already in the database/);
  });

  it("exits 2 naming the file for bad input, a missing path or a bad option", () => {
    writeFileSync(join(dir, "junk.bin"), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    const bad = run("ingest", "--db", "x.db", "junk.bin");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(
      /junk\.bin: not a capture, rule dump, conntrack table or Kubernetes JSON \(first bytes: 01 02 03/,
    );
    const missing = run("ingest", "--db", "x.db", "nope.pcap");
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^svctrace: nope\.pcap: no such file or directory/m);
    const when = run("ingest", "--db", "x.db", "--taken-at", "yesterday", "n1.iptables");
    expect(when.status).toBe(2);
    expect(when.stderr).toMatch(/--taken-at: not an ISO 8601 time or epoch seconds/);
  });

  it("accepts --taken-at as ISO 8601 or epoch seconds, and --node", () => {
    const r = run(
      "ingest",
      "--db",
      "t.db",
      "--json",
      "--node",
      "worker-7",
      "--taken-at",
      "2026-01-02T03:04:05Z",
      "n1.iptables",
    );
    expect(r.status, r.stderr).toBe(0);
    const db = new Database(join(dir, "t.db"), { readonly: true });
    expect(db.prepare("SELECT node, taken_at FROM rulesets").all()).toEqual([
      { node: "worker-7", taken_at: Date.UTC(2026, 0, 2, 3, 4, 5) / 1000 },
    ]);
    db.close();
    const epoch = run("ingest", "--db", "t2.db", "--taken-at", "1764088319", "n1.iptables");
    expect(epoch.status, epoch.stderr).toBe(0);
  });
});
