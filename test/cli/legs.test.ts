import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "dist", "src", "cli", "main.js");
const pcap = join(root, "test", "fixtures", "ingest", "node1-dnat.pcap");

let dir: string;
let db: string;
const run = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { encoding: "utf8" });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "svctrace-cli-legs-"));
  db = join(dir, "l.db");
  const r = run("ingest", "--db", db, "--node", "node1", pcap);
  if (r.status !== 0) throw new Error(r.stderr);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("svctrace legs", () => {
  it("prints one JSON object per line with --json, filtered by protocol and host", () => {
    const r = run("legs", "--db", db, "--json", "--proto", "tcp", "--host", "10.96.0.10");
    expect(r.status, r.stderr).toBe(0);
    const legs = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(legs).toHaveLength(5);
    for (const leg of legs) {
      expect(leg).toMatchObject({
        proto: 6,
        respIp: "10.96.0.10",
        respPort: 80,
        node: "node1",
        connState: "SF",
        direction: "in",
      });
    }
  });

  it("writes a Zeek conn.log: headers, one tab-separated line per leg with the declared fields", () => {
    const r = run("legs", "--db", db, "--format", "zeek", "--proto", "tcp");
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("#separator \\x09");
    expect(lines).toContain("#path\tconn");
    const fields = lines
      .find((l) => l.startsWith("#fields\t"))!
      .split("\t")
      .slice(1);
    const types = lines
      .find((l) => l.startsWith("#types\t"))!
      .split("\t")
      .slice(1);
    expect(fields.slice(0, 7)).toEqual([
      "ts",
      "uid",
      "id.orig_h",
      "id.orig_p",
      "id.resp_h",
      "id.resp_p",
      "proto",
    ]);
    expect(fields).toEqual(
      expect.arrayContaining(["conn_state", "history", "orig_pkts", "resp_pkts", "community_id"]),
    );
    expect(types).toHaveLength(fields.length);
    expect(lines.at(-1)).toMatch(/^#close\t\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d$/);
    const rows = lines.filter((l) => !l.startsWith("#")).map((l) => l.split("\t"));
    expect(rows).toHaveLength(10);
    const uids = new Set<string>();
    for (const row of rows) {
      expect(row).toHaveLength(fields.length);
      const rec = Object.fromEntries(fields.map((f, i) => [f, row[i]]));
      expect(rec.ts).toMatch(/^\d+\.\d{6}$/);
      expect(rec.uid).toMatch(/^C[0-9A-Za-z]{17}$/);
      expect(rec.proto).toBe("tcp");
      expect(rec.conn_state).toBe("SF");
      expect(rec.community_id).toMatch(/^1:[A-Za-z0-9+/]+=*$/);
      uids.add(rec.uid!);
    }
    expect(uids.size).toBe(10);
  });

  it("prints a table for people, and 'no legs' when the filter matches none", () => {
    const r = run("legs", "--db", db, "--proto", "tcp", "--limit", "2");
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split("\n")).toHaveLength(2);
    expect(r.stdout).toMatch(/192\.168\.50\.10:\d+ → 10\.96\.0\.10:80/);
    expect(run("legs", "--db", db, "--host", "10.1.2.3").stdout).toBe("no legs\n");
  });

  it("exits 2 for a bad protocol, host or format, or a missing database", () => {
    expect(run("legs", "--db", db, "--proto", "bogus").status).toBe(2);
    expect(run("legs", "--db", db, "--host", "300.1.1.1").status).toBe(2);
    expect(run("legs", "--db", db, "--format", "csv").status).toBe(2);
    const missing = run("legs", "--db", join(dir, "none.db"));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/none\.db: cannot open database/);
  });
});
