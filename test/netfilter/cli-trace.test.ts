import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { referenceDir } from "./helpers.js";

const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "dist", "src", "cli", "main.js");
const rules = join(referenceDir, "01-TestTracePacket.txt");
const run = (...args: string[]) =>
  spawnSync(process.execPath, [bin, "trace", ...args], { encoding: "utf8" });

describe("svctrace trace", () => {
  it("--json prints exactly one object with the documented fields", () => {
    const r = run(
      "--rules",
      rules,
      "--src",
      "10.0.0.2",
      "--dst",
      "172.30.0.44",
      "--dport",
      "80",
      "--local-ip",
      "192.168.0.2",
      "--json",
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      outcomes: Array<Record<string, unknown>>;
      unmodelled: unknown[];
    };
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    expect(out.unmodelled).toEqual([]);
    expect(out.outcomes.map((o) => o.endpoint)).toEqual(["10.180.0.4:80", "10.180.0.5:80"]);
    const o = out.outcomes[0]!;
    for (const key of [
      "verdict",
      "decidedBy",
      "endpoint",
      "probability",
      "masquerade",
      "snat",
      "path",
    ]) {
      expect(o).toHaveProperty(key);
    }
    expect(o.verdict).toBe("DNAT");
    expect(o.probability).toBe(0.5);
    const path = o.path as Array<Record<string, unknown>>;
    expect(path.find((s) => s.chain === "KUBE-SERVICES")).toMatchObject({
      table: "nat",
      index: 6,
      rule: expect.stringContaining("-A KUBE-SERVICES") as unknown,
    });
  });

  it("tells the story for people", () => {
    const r = run("--rules", rules, "--src", "10.0.0.2", "--dst", "172.30.0.46", "--dport", "80");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("100% REJECT (icmp-port-unreachable) via KUBE-SERVICES#1");
  });

  it("bad input exits 2 with a one-line reason", () => {
    const bad = run(
      "--rules",
      rules,
      "--src",
      "10.0.0.300",
      "--dst",
      "172.30.0.46",
      "--dport",
      "80",
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--src "10.0.0.300": not an IP address/);
    const missing = run(
      "--rules",
      "/nonexistent.rules",
      "--src",
      "10.0.0.2",
      "--dst",
      "172.30.0.46",
      "--dport",
      "80",
    );
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/nonexistent\.rules/);
  });
});
