import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "dist", "src", "cli", "main.js");
const bundle = join(root, "traces", "03-stale-rules-service-removed");

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "svctrace-ifnames-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) =>
  spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: "utf8" });

describe("legs name SLL2 interfaces from the node's ip -j addr dump", () => {
  it("shows each leg's interface by the name its node gave it", () => {
    expect(run("ingest", "--db", "b.db", bundle).status).toBe(0);
    const r = run("legs", "--db", "b.db", "--node", "n1", "--json");
    expect(r.status, r.stderr).toBe(0);
    const legs = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { interfaceId: number; interfaceName: string | null });
    const addr = JSON.parse(readFileSync(join(bundle, "nodes", "n1", "addr.json"), "utf8")) as {
      ifindex: number;
      ifname: string;
    }[];
    const byIndex = new Map(addr.map((a) => [a.ifindex, a.ifname]));
    expect(legs.length).toBeGreaterThan(0);
    for (const leg of legs) {
      expect(leg.interfaceName).toBe(byIndex.get(leg.interfaceId % 1_000_000));
    }
    // The VIP leg and the DNATed leg of one connection are seen on different interfaces.
    expect(new Set(legs.map((l) => l.interfaceName)).size).toBeGreaterThan(1);
    const table = run("legs", "--db", "b.db", "--node", "n1", "--limit", "3");
    expect(table.stdout).not.toMatch(/ if\d+\//);
  });
});
