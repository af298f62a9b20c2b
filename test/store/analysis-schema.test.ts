import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  connectionLegs,
  hasAnalysis,
  iterateConnections,
  type StoredConnection,
} from "../../src/store/analysis-schema.js";
import { AnalysisWriter } from "../../src/store/analysis-writer.js";
import { openDb } from "../../src/store/db.js";
import { migrations } from "../../src/store/migrations.js";

const dir = mkdtempSync(join(tmpdir(), "svctrace-analysis-schema-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function connection(id: number, legIds: number[]): StoredConnection {
  return {
    id,
    proto: "tcp",
    client: { ip: "10.244.1.10", port: 40000 + id },
    vip: { ip: "10.96.0.10", port: 80 },
    service: "default/web:http",
    node: "n1",
    hook: "prerouting",
    endpoint: { ip: "10.244.2.5", port: 8080 },
    snat: null,
    verdict: "consistent",
    start: 1000 + id,
    end: 1001 + id,
    path: ["KUBE-SERVICES"],
    candidates: [{ endpoint: "10.244.2.5:8080", probability: 1 }],
    vipFrom: "translation",
    answered: true,
    refusal: null,
    connState: "SF",
    rulesetId: null,
    legIds,
    translationIds: [],
    conntrackIds: [],
  };
}

describe("analysis tables", () => {
  it("keep each connection's legs with it, and a rerun replaces them", () => {
    const db = openDb(join(dir, "a.db"));
    for (const legs of [
      [7, 3, 5],
      [9, 8],
    ]) {
      const w = new AnalysisWriter(db);
      w.begin();
      w.addConnection(connection(1, legs));
      w.addConnection(connection(2, []));
      w.commit();
    }
    expect(connectionLegs(db, 1)).toEqual([8, 9]);
    expect(connectionLegs(db, 2)).toEqual([]);
    expect(connectionLegs(db, 3)).toEqual([]);
    expect([...iterateConnections(db)].map((c) => c.id)).toEqual([1, 2]);
    db.close();
  });

  it("stores each (path, candidates) pair once and gives every connection its own back", () => {
    const db = openDb(join(dir, "paths.db"));
    const w = new AnalysisWriter(db);
    w.begin();
    const other = [
      { endpoint: "10.244.2.5:8080", probability: 0.5 },
      { endpoint: "10.244.3.5:8080", probability: 0.5 },
    ];
    w.addConnection(connection(1, []));
    // Equal content in a different array object: still one row.
    w.addConnection({ ...connection(2, []), path: ["KUBE-SERVICES"] });
    w.addConnection({ ...connection(3, []), candidates: other });
    w.addConnection({ ...connection(4, []), path: ["KUBE-SERVICES", "KUBE-SVC-X"] });
    w.commit();
    const rows = db.prepare("SELECT count(*) AS n FROM connection_paths").get() as { n: number };
    expect(rows.n).toBe(3);
    // The view other tools read: each connection with its own path and candidates.
    const base = JSON.stringify(connection(1, []).candidates);
    expect(
      db.prepare("SELECT id, path, candidates FROM connections_full ORDER BY id").all(),
    ).toEqual([
      { id: 1, path: '["KUBE-SERVICES"]', candidates: base },
      { id: 2, path: '["KUBE-SERVICES"]', candidates: base },
      { id: 3, path: '["KUBE-SERVICES"]', candidates: JSON.stringify(other) },
      { id: 4, path: '["KUBE-SERVICES","KUBE-SVC-X"]', candidates: base },
    ]);
    const read = [...iterateConnections(db)];
    expect(read.map((c) => [c.id, c.path, c.candidates])).toEqual([
      [1, ["KUBE-SERVICES"], connection(1, []).candidates],
      [2, ["KUBE-SERVICES"], connection(2, []).candidates],
      [3, ["KUBE-SERVICES"], other],
      [4, ["KUBE-SERVICES", "KUBE-SVC-X"], connection(4, []).candidates],
    ]);
    // A rerun starts the pairs afresh.
    const again = new AnalysisWriter(db);
    again.begin();
    again.addConnection({ ...connection(5, []), candidates: other });
    again.commit();
    expect(db.prepare("SELECT path, candidates FROM connection_paths").all()).toEqual([
      { path: '["KUBE-SERVICES"]', candidates: JSON.stringify(other) },
    ]);
    db.close();
  });

  it("upgrades a database analyzed before paths had their own table: the old results go", () => {
    const path = join(dir, "v6.db");
    const old = openDb(path, { migrations: migrations.slice(0, 6) });
    const w6 = old.prepare(
      `INSERT INTO connections (id, proto, client_ip, client_port, vip_ip, vip_port, hook, verdict,
         start, end, path, candidates, vip_from, answered, translation_ids, conntrack_ids)
       VALUES (1, 'tcp', '10.244.1.10', 40000, '10.96.0.10', 80, 'prerouting', 'consistent',
         1000, 1001, '[]', '[]', 'capture', 1, '[]', '[]')`,
    );
    w6.run();
    old.exec("INSERT INTO analysis_runs (ran_at, seconds, stats) VALUES (1, 1, '{}')");
    old.close();
    const db = openDb(path);
    expect(hasAnalysis(db)).toBe(false);
    expect([...iterateConnections(db)]).toEqual([]);
    db.close();
  });

  it("upgrades a database analyzed before leg ids moved into connections", () => {
    const path = join(dir, "old.db");
    const old = openDb(path, { migrations: migrations.slice(0, 5) });
    old.exec("INSERT INTO connection_legs VALUES (1, 2)");
    old.close();
    const db = openDb(path);
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
      .all()
      .map((r) => (r as { name: string }).name);
    expect(tables).not.toContain("connection_legs");
    const w = new AnalysisWriter(db);
    w.begin();
    w.addConnection(connection(1, [4]));
    w.commit();
    expect(connectionLegs(db, 1)).toEqual([4]);
    db.close();
  });
});
