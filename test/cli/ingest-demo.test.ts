import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "dist", "src", "cli", "main.js");
const bundle = join(root, "traces", "00-interim-dnat");

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "svctrace-cli-demo-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: "utf8" });

describe("svctrace demo", () => {
  it("ingests a bundle into a fresh database every run and shows the first legs", () => {
    writeFileSync(join(dir, "svctrace-demo.db"), "not a database, replaced by the demo");
    for (let i = 0; i < 2; i++) {
      const r = run("demo", "--bundle", bundle);
      expect(r.status, r.stderr).toBe(0);
      // Fresh each time: the second run ingests everything again rather than finding duplicates.
      expect(r.stdout).toMatch(/ingested 5 files into svctrace-demo\.db \(0 already present/);
      expect(r.stdout).toMatch(/translations\s+5/);
      expect(r.stdout).toMatch(/first 5 of 22 legs/);
    }
    expect(existsSync(join(dir, "svctrace-demo.db"))).toBe(true);
  });

  it("by default analyzes the stale-rules sample and names the node that kept the rules", () => {
    const r = run("demo");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("traces/03-stale-rules-service-removed");
    expect(r.stdout).toMatch(/120 connection\(s\) on 2 node\(s\)/);
    expect(r.stdout).toMatch(/ERROR\s+stale-rules default\/api:http @n2/);
    expect(r.stdout).toMatch(/ERROR\s+post-removal-traffic default\/api:http @n2/);
    expect(r.stdout).not.toMatch(/ERROR\s+\S+ \S+ @n1/);
  });

  it("exits 2 when there is no bundle", () => {
    const r = run("demo", "--bundle", join(dir, "missing"));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/missing: no such file or directory/);
  });
});
