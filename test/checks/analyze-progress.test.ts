import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { type AnalyzeProgress, analyze } from "../../src/checks/analyze.js";
import { analyzeProgressLine } from "../../src/cli/commands/analyze.js";
import { ingestPaths } from "../../src/ingest/ingest.js";
import { openDb } from "../../src/store/db.js";

const root = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "svctrace-analyze-progress-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("analyze progress", () => {
  it("reports how many legs and translations were read, of how many, as it goes", async () => {
    const db = openDb(join(dir, "t.db"));
    await ingestPaths(db, [join(root, "traces", "01-clusterip-two-nodes")]);
    const total = (
      db
        .prepare("SELECT (SELECT count(*) FROM legs) + (SELECT count(*) FROM translations) AS n")
        .get() as { n: number }
    ).n;
    const seen: AnalyzeProgress[] = [];
    const summary = analyze(db, { onProgress: (p) => seen.push(p), progressEvery: 25 });
    db.close();
    expect(seen.length).toBe(Math.floor(total / 25));
    seen.forEach((p, i) => {
      expect(p.total).toBe(total);
      expect(p.read).toBe(25 * (i + 1));
      expect(p.connections).toBeLessThanOrEqual(summary.connections);
      if (i > 0) expect(p.connections).toBeGreaterThanOrEqual(seen[i - 1]?.connections ?? 0);
    });
  });

  it("draws one line on a terminal and clears it at the end", async () => {
    const stream = new PassThrough({ encoding: "utf8" });
    let text = "";
    stream.on("data", (chunk: string) => {
      text += chunk;
    });
    const line = analyzeProgressLine(stream);
    line.show({ read: 500, total: 2000, connections: 100, seconds: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    expect(text).toBe("\r\x1b[K25% of 2000 legs and translations  100 connections  50/s  ETA 6 s");
    line.clear();
    await new Promise((resolve) => setImmediate(resolve));
    expect(text.endsWith("\r\x1b[K")).toBe(true);
  });
});
