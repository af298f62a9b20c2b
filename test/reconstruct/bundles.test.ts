import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { analyze, checkContext } from "../../src/checks/analyze.js";
import { runChecks, startChecks } from "../../src/checks/index.js";
import { ingestPaths } from "../../src/ingest/ingest.js";
import type { ExpectedFile, TruthFile } from "../../src/lab/truth.js";
import { loadAnalysis } from "../../src/reconstruct/load.js";
import {
  iterateConnections,
  listFindings,
  type StoredConnection,
} from "../../src/store/analysis-schema.js";
import { openDb } from "../../src/store/db.js";
import { listCaptures } from "../../src/store/queries.js";

// Every lab bundle in traces/: ingest, analyze, and hold the result against the kernel's truth
// (truth.json) and the faults the scenario injected (expected.json).
const root = join(import.meta.dirname, "..", "..");
const traces = join(root, "traces");
const bundles = existsSync(traces)
  ? readdirSync(traces).filter(
      (d) =>
        existsSync(join(traces, d, "truth.json")) && existsSync(join(traces, d, "expected.json")),
    )
  : [];

const RANK = { error: 0, warning: 1, info: 2 } as const;
const tmp = mkdtempSync(join(tmpdir(), "svctrace-bundles-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * Our verdicts are finer than the lab's: `refused` (the endpoint answered RST/ICMP) is one kind
 * of the lab's `blackholed` (the client got no answer).
 */
function verdictAgrees(t: TruthFile["connections"][number], ours: string): boolean {
  if (ours === t.expectedVerdict) return true;
  if (!t.answered && (ours === "refused" || ours === "blackholed")) {
    return t.expectedVerdict === "blackholed" || t.expectedVerdict === "consistent";
  }
  return false;
}

const ap = (x: { ip: string; port: number } | null) => (x === null ? null : `${x.ip}:${x.port}`);

describe.skipIf(bundles.length === 0)("lab bundles", () => {
  for (const name of bundles) {
    describe(name, async () => {
      const truth = JSON.parse(readFileSync(join(traces, name, "truth.json"), "utf8")) as TruthFile;
      const expected = JSON.parse(
        readFileSync(join(traces, name, "expected.json"), "utf8"),
      ) as ExpectedFile;
      const db = openDb(join(tmp, `${name}.db`));
      await ingestPaths(db, [join(traces, name)]);
      const summary = analyze(db);
      const conns: StoredConnection[] = [...iterateConnections(db)];
      const findings = listFindings(db);
      // The checks again on the stored connections, in start order and backwards: analyze fed
      // them in the order reconstruction finished them, and no check may depend on the order.
      const ctx = checkContext(db, loadAnalysis(db));
      const inStartOrder = runChecks(ctx);
      const backwards = startChecks(ctx);
      for (const c of [...ctx.connections()].reverse()) backwards.visit(c);
      const inReverse = backwards.finish();
      // What each node's capture covered: a connection outside it cannot be reconstructed.
      const covered = new Map<string, { from: number; to: number }>();
      for (const c of listCaptures(db)) {
        if (c.node !== null && c.firstTs !== null && c.lastTs !== null)
          covered.set(c.node, { from: c.firstTs, to: c.lastTs });
      }
      // Analyze again with the build, as `svctrace analyze` runs: its reader and writer threads
      // (the tests run the TypeScript sources, where the same encoders run in-process).
      const built = (await import(join(root, "dist", "src", "checks", "analyze.js"))) as {
        analyze: typeof analyze;
      };
      built.analyze(db);
      const threaded = { connections: [...iterateConnections(db)], findings: listFindings(db) };
      db.close();
      const byKey = new Map<string, StoredConnection[]>();
      for (const c of conns) {
        const k = `${c.proto}|${ap(c.client)}|${ap(c.vip)}`;
        byKey.set(k, [...(byKey.get(k) ?? []), c]);
      }
      // The lab does not always know the client port (a refused connect); those are compared
      // in aggregate below.
      const anonymous = truth.connections.filter((t) => t.client === "");
      const captured = truth.connections.filter((t) => {
        if (t.client === "") return false;
        const span = covered.get(t.node);
        return span !== undefined && t.start >= span.from && t.end <= span.to;
      });

      it("gets the same results through the reader and writer threads as in-process", () => {
        expect(threaded.connections).toEqual(conns);
        expect(threaded.findings).toEqual(findings);
      });

      it("finds the same whatever order the checks see the connections in", () => {
        const plain = (list: readonly object[]) =>
          JSON.parse(JSON.stringify(list.map(({ id: _, ...f }: { id?: number }) => f)));
        expect(plain(inStartOrder)).toEqual(plain(findings));
        expect(plain(inReverse)).toEqual(plain(findings));
      });

      it("reconstructs every captured connection once, with the endpoint the kernel chose", () => {
        const problems: string[] = [];
        for (const t of captured) {
          const mine = (byKey.get(`${t.proto}|${t.client}|${t.vip}`) ?? []).filter(
            (c) => Math.abs(c.start - t.start) < 0.25,
          );
          if (mine.length !== 1) {
            problems.push(`truth #${t.id} ${t.client} -> ${t.vip}: ${mine.length} connections`);
            continue;
          }
          const c = mine[0]!;
          // The kernel's choice: the answering pod, or conntrack's record when nobody answered.
          const chosen = t.endpoint ?? t.conntrack?.endpoint ?? null;
          if (
            chosen !== null &&
            ap(c.endpoint) !== chosen &&
            t.expectedVerdict !== "untranslated"
          ) {
            problems.push(
              `truth #${t.id} ${t.client} -> ${t.vip}: endpoint ${ap(c.endpoint)} instead of ${chosen}`,
            );
          }
          if (c.node !== t.node)
            problems.push(`truth #${t.id}: node ${c.node} instead of ${t.node}`);
          if (!verdictAgrees(t, c.verdict)) {
            problems.push(
              `truth #${t.id} ${t.client} -> ${t.vip}: verdict ${c.verdict} instead of ${t.expectedVerdict}`,
            );
          }
        }
        const claimed = new Set<number>();
        for (const t of anonymous) {
          const c = conns.find(
            (x) =>
              !claimed.has(x.id) &&
              x.proto === t.proto &&
              ap(x.vip) === t.vip &&
              Math.abs(x.start - t.start) < 0.5 &&
              verdictAgrees(t, x.verdict),
          );
          if (c === undefined)
            problems.push(
              `truth #${t.id} (client port unknown) -> ${t.vip}: no ${t.expectedVerdict} connection`,
            );
          else claimed.add(c.id);
        }
        expect(problems).toEqual([]);
        expect(captured.length).toBeGreaterThan(0);
        expect(summary.connections).toBeLessThanOrEqual(truth.connections.length);
      });

      it("reports every injected fault with the right check", () => {
        const missing = expected.findings.filter(
          (e) =>
            !findings.some(
              (f) =>
                f.check === e.check &&
                (e.service === null || f.service === e.service) &&
                (e.node === null || f.node === e.node) &&
                RANK[f.severity] <= RANK[e.severity],
            ),
        );
        expect(missing).toEqual([]);
      });

      it("raises no error or warning that the scenario does not explain", () => {
        const unexplained = findings
          .filter((f) => f.severity === "error" || f.severity === "warning")
          .filter(
            (f) =>
              !expected.findings.some(
                (e) =>
                  e.check === f.check &&
                  (e.service === null || f.service === null || f.service === e.service) &&
                  (e.node === null || f.node === null || f.node === e.node),
              ),
          )
          .map(
            (f) => `${f.severity} ${f.check} ${f.service ?? "-"} @${f.node ?? "-"}: ${f.summary}`,
          );
        expect(unexplained).toEqual([]);
      });

      it.runIf(expected.findings.length === 0)(
        "reports no warnings or errors on a clean scenario",
        () => {
          const loud = findings
            .filter((f) => f.severity !== "info")
            .map((f) => `${f.check}: ${f.summary}`);
          expect(loud).toEqual([]);
        },
      );
    });
  }
});
