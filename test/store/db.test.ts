import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { LegRecord } from "../../src/flow/types.js";
import { openDb, schemaVersion } from "../../src/store/db.js";
import { migrations } from "../../src/store/migrations.js";
import { listLegs, listRuleSets, loadRuleSetText } from "../../src/store/queries.js";
import { StoreWriter } from "../../src/store/writer.js";
import { InputError } from "../../src/util/errors.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "svctrace-store-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const tables = (path: string): string[] => {
  const db = new Database(path, { readonly: true });
  const names = (
    db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as {
      name: string;
    }[]
  ).map((r) => r.name);
  db.close();
  return names;
};

const sampleLeg: LegRecord = {
  interfaceId: 2,
  proto: 6,
  origIp: "192.168.50.10",
  origPort: 34152,
  respIp: "10.96.0.10",
  respPort: 80,
  firstTs: 1764088296.779573,
  lastTs: 1764088296.788861,
  origPackets: 6,
  origBytes: 446,
  respPackets: 6,
  respBytes: 790,
  connState: "SF",
  history: "ShADadFf",
  communityId: "1:abc=",
  direction: "in",
  fingerprint: "2153b118",
  tunnel: null,
  icmpErrors: {},
};

describe("openDb", () => {
  it("creates every table, in WAL mode, at the latest schema version", () => {
    const path = join(dir, "a.db");
    const db = openDb(path);
    expect(schemaVersion(db)).toBe(migrations.length);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    db.close();
    expect(tables(path)).toEqual(
      expect.arrayContaining([
        "captures",
        "interfaces",
        "legs",
        "translations",
        "dns",
        "anomalies",
        "inputs",
        "rulesets",
        "rules",
        "conntrack",
        "inventory",
        "services",
        "endpoints",
        "documents",
      ]),
    );
  });

  it("upgrades an older database in place, keeping its rows", () => {
    const path = join(dir, "old.db");
    const old = openDb(path, { migrations: migrations.slice(0, 1) });
    expect(schemaVersion(old)).toBe(1);
    expect(tables(path)).not.toContain("rulesets");
    // The writer prepares statements for every table; an old schema lacks some, so use SQL.
    old.exec(`INSERT INTO inputs VALUES (1, 'aa', '/x.pcap', 'pcap', 'n1', 1, NULL, 0);
      INSERT INTO captures (id, input_id, path, sha256, format, compressed, node, packets, bytes,
        link_types, warnings, legs, translations, dns_messages)
        VALUES (7, 1, '/x.pcap', 'aa', 'pcap', 0, 'n1', 12, 1236, '[276]', '[]', 1, 0, 0);
      INSERT INTO legs (capture_id, node, interface_id, proto, orig_ip, orig_port, resp_ip, resp_port,
        first_ts, last_ts, orig_packets, orig_bytes, resp_packets, resp_bytes, conn_state, history,
        community_id, direction, fingerprint)
        VALUES (7, 'n1', 2, 6, '192.168.50.10', 34152, '10.96.0.10', 80, 1764088296.779573,
        1764088296.788861, 6, 446, 6, 790, 'SF', 'ShADadFf', '1:abc=', 'in', '2153b118');`);
    const cap = 7;
    old.close();

    const db = openDb(path);
    expect(schemaVersion(db)).toBe(migrations.length);
    expect(listLegs(db)).toHaveLength(1);
    expect(listLegs(db)[0]).toMatchObject({ ...sampleLeg, node: "n1", captureId: cap });
    // Rebuilding `inputs` (migration 5) must not cascade into the captures that point at it.
    expect(db.prepare("SELECT id, identity, sha256 FROM inputs").all()).toEqual([
      { id: 1, identity: "aa", sha256: "aa" },
    ]);
    expect(db.prepare("SELECT count(*) AS n FROM captures").get()).toEqual({ n: 1 });
    expect(db.pragma("foreign_keys", { simple: true })).toBe(1);
    db.close();
  });

  it("adding a migration is one more element in the list", () => {
    const path = join(dir, "more.db");
    openDb(path).close();
    const extra = [
      ...migrations,
      { name: "extra", sql: "CREATE TABLE extra_table (id INTEGER PRIMARY KEY)" },
    ];
    const db = openDb(path, { migrations: extra });
    expect(schemaVersion(db)).toBe(extra.length);
    db.close();
    expect(tables(path)).toContain("extra_table");
  });

  it("refuses a database from a newer svctrace, and a file that is not a database", () => {
    const path = join(dir, "new.db");
    const raw = new Database(path);
    raw.pragma(`user_version = ${migrations.length + 5}`);
    raw.close();
    expect(() => openDb(path)).toThrow(/newer than this svctrace knows/);
    expect(() => openDb(path)).toThrow(InputError);
    expect(() => openDb(join(dir, "missing.db"), { readonly: true })).toThrow(InputError);
  });

  it("keeps a rule dump's text exactly, to be parsed again", () => {
    const db = openDb(join(dir, "r.db"));
    const w = new StoreWriter(db);
    const input = w.addInput({
      identity: "bb",
      sha256: "bb",
      path: "/n1.iptables",
      kind: "iptables-save",
      node: "n1",
      size: 5,
      takenAt: 10,
    });
    const text = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
    const id = w.addRuleSet({
      inputId: input,
      node: "n1",
      kind: "iptables-save",
      family: "ipv4",
      takenAt: 10,
      generator: null,
      source: "/n1.iptables",
      sha256: "bb",
      rawText: text,
    });
    expect(loadRuleSetText(db, id)).toBe(text);
    expect(listRuleSets(db, "n1")).toEqual([
      expect.objectContaining({ id, node: "n1", takenAt: 10, family: "ipv4" }),
    ]);
    expect(listRuleSets(db, "n2")).toEqual([]);
    db.close();
  });
});
