import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { StoredConnection, StoredFinding } from "../../src/store/analysis-schema.js";
import { AnalysisWriter } from "../../src/store/analysis-writer.js";
import type { Db } from "../../src/store/db.js";
import { openDb } from "../../src/store/db.js";

const root = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "svctrace-analysis-writer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The writer as built: the worker thread runs compiled JavaScript (global setup builds). */
async function builtWriter(): Promise<typeof AnalysisWriter> {
  const m = (await import(join(root, "dist", "src", "store", "analysis-writer.js"))) as {
    AnalysisWriter: typeof AnalysisWriter;
  };
  return m.AnalysisWriter;
}

const paths = [
  ["KUBE-SERVICES", "KUBE-SVC-A", "KUBE-SEP-1"],
  ["KUBE-SERVICES", "KUBE-SVC-A"],
];
const candidates = [
  [{ endpoint: "10.244.2.5:8080", probability: 0.5 }],
  [
    { endpoint: "10.244.2.5:8080", probability: 0.5 },
    { endpoint: "[fd00::5]:8080", probability: 0.5 },
  ],
];

/** Varied connections: every nullable column both ways, id lists of every length, many strings. */
function connection(i: number): StoredConnection {
  return {
    id: i + 1,
    proto: i % 5 === 0 ? "udp" : "tcp",
    client: { ip: `10.244.${i % 7}.${i % 250}`, port: 1024 + i },
    vip: { ip: i % 3 === 0 ? "fd00::10" : "10.96.0.10", port: 80 },
    service: i % 11 === 0 ? null : `ns${i % 13}/web:http`,
    node: i % 17 === 0 ? null : `n${i % 3}`,
    hook: i % 2 === 0 ? "prerouting" : "output",
    endpoint: i % 4 === 0 ? null : { ip: `10.244.2.${i % 200}`, port: 8080 },
    snat: i % 6 === 0 ? { ip: "172.18.0.2", port: 60000 + (i % 5000) } : null,
    verdict: ["consistent", "blackholed", "predicted", "unexpected-endpoint"][i % 4] as string,
    start: 1_764_000_000 + i / 7,
    end: 1_764_000_000 + i / 7 + 0.25,
    path: paths[i % 2] as string[],
    candidates: candidates[i % 2] as StoredConnection["candidates"],
    vipFrom: i % 9 === 0 ? "conntrack" : "translation",
    answered: i % 4 !== 1,
    refusal: i % 8 === 1 ? "rst" : null,
    connState: i % 10 === 0 ? null : "SF",
    rulesetId: i % 12 === 0 ? null : (i % 3) + 1,
    legIds: Array.from({ length: i % 4 }, (_, k) => 3 * i + k),
    translationIds: i % 3 === 0 ? [] : [i * 2],
    conntrackIds: i % 5 === 0 ? [i, i + 100_000] : [],
  };
}

const finding: StoredFinding = {
  check: "fairness",
  severity: "warning",
  service: "ns1/web:http",
  node: "n1",
  from: 1,
  to: 2,
  summary: "<b>not markup</b>",
  evidence: { counts: { "10.244.2.5:8080": 3 } },
};

function tables(db: Db): unknown {
  return {
    connections: db.prepare("SELECT * FROM connections ORDER BY id").all(),
    paths: db.prepare("SELECT * FROM connection_paths ORDER BY id").all(),
    findings: db.prepare("SELECT * FROM findings ORDER BY id").all(),
    runs: db.prepare("SELECT seconds, stats FROM analysis_runs").all(),
  };
}

function write(Writer: typeof AnalysisWriter, db: Db, n: number, thread: boolean, max?: number) {
  const w = new Writer(db, { thread, ...(max === undefined ? {} : { maxDictionary: max }) });
  w.begin();
  for (let i = 0; i < n; i++) w.addConnection(connection(i));
  w.addFinding(finding);
  w.recordRun(1.5, { connections: n });
  w.commit();
}

describe("AnalysisWriter", () => {
  it("writes the same rows from its worker thread as in this thread, over many batches", async () => {
    const Built = await builtWriter();
    const here = openDb(join(dir, "here.db"));
    const there = openDb(join(dir, "there.db"));
    write(AnalysisWriter, here, 5000, false);
    write(Built, there, 5000, true);
    const expected = tables(here);
    expect(tables(there)).toEqual(expected);
    expect((expected as { connections: unknown[] }).connections).toHaveLength(5000);
    // Spot-check one row against what was added.
    const row = here.prepare("SELECT * FROM connections WHERE id = 7").get();
    expect(row).toMatchObject({
      client_ip: "10.244.6.6",
      vip_ip: "fd00::10",
      endpoint_ip: "10.244.2.6",
      snat_ip: "172.18.0.2",
      snat_port: 60006,
      leg_ids: "[18,19]",
      translation_ids: "[]",
      conntrack_ids: "[]",
      ruleset_id: 1,
    });
    here.close();
    there.close();
  });

  it("keeps every string right when its dictionary starts afresh", async () => {
    const Built = await builtWriter();
    const plain = openDb(join(dir, "plain.db"));
    const reset = openDb(join(dir, "reset.db"));
    write(AnalysisWriter, plain, 3000, false);
    write(Built, reset, 3000, true, 10);
    expect(tables(reset)).toEqual(tables(plain));
    plain.close();
    reset.close();
  });

  for (const thread of [false, true]) {
    it(`drops a run that is rolled back midway (${thread ? "worker thread" : "in-process"})`, async () => {
      const Writer = thread ? await builtWriter() : AnalysisWriter;
      const db = openDb(join(dir, `rollback-${thread}.db`));
      write(Writer, db, 50, thread);
      const before = tables(db);
      const w = new Writer(db, { thread });
      w.begin();
      for (let i = 0; i < 3000; i++) w.addConnection(connection(i + 7));
      w.addFinding(finding);
      // What analyze does when reconstruction or a check throws.
      w.rollback();
      expect(tables(db)).toEqual(before);
      // The database is free for the next run.
      write(Writer, db, 10, thread);
      expect((tables(db) as { connections: unknown[] }).connections).toHaveLength(10);
      db.close();
    });

    it(`leaves the previous results when writing fails (${thread ? "worker thread" : "in-process"})`, async () => {
      const Writer = thread ? await builtWriter() : AnalysisWriter;
      const db = openDb(join(dir, `fail-${thread}.db`));
      write(Writer, db, 100, thread);
      const before = tables(db);
      const w = new Writer(db, { thread });
      w.begin();
      for (let i = 0; i < 2000; i++) w.addConnection(connection(i));
      // Row 2001 breaks a NOT NULL constraint: the batch holding it fails in SQLite.
      w.addConnection({ ...connection(2001), verdict: null as unknown as string });
      expect(() => {
        w.commit();
      }).toThrow(/NOT NULL constraint failed: connections\.verdict/);
      w.rollback();
      expect(tables(db)).toEqual(before);
      db.close();
    });
  }
});
