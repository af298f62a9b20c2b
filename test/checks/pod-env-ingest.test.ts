import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

// The whole path through the built binary: ingest a bundle and a pod env dump, analyze, and read
// the findings back as a user would; --fail-on gives exit code 3.
const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "dist", "src", "cli", "main.js");
const tmp = mkdtempSync(join(tmpdir(), "svctrace-podenv-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function svctrace(...args: string[]): { code: number; stdout: string } {
  try {
    return {
      code: 0,
      stdout: execFileSync("node", [bin, ...args], { encoding: "utf8", stdio: "pipe" }),
    };
  } catch (error) {
    const e = error as { status: number; stdout: string };
    return { code: e.status, stdout: e.stdout };
  }
}

describe("svctrace analyze / findings / connections", () => {
  const db = join(tmp, "t.db");
  it("finds a stale *_SERVICE_HOST in a pod's env", () => {
    expect(
      svctrace("ingest", "--db", db, join(root, "traces", "01-clusterip-two-nodes")).code,
    ).toBe(0);
    const env = join(root, "test", "fixtures", "analysis", "client.env");
    expect(
      svctrace(
        "ingest",
        "--db",
        db,
        "--pod",
        "default/client-a",
        "--started-at",
        "2026-11-25T16:00:00Z",
        env,
      ).code,
    ).toBe(0);
    expect(svctrace("analyze", "--db", db).code).toBe(0);
    const lines = svctrace("findings", "--db", db, "--check", "env-discovery", "--json")
      .stdout.trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            check: string;
            service: string;
            evidence: { kind: string; pod: string };
          },
      );
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      check: "env-discovery",
      service: "default/web",
      evidence: { kind: "wrong-address", pod: "default/client-a" },
    });
    expect(svctrace("findings", "--db", db, "--fail-on", "warning").code).toBe(3);
    expect(svctrace("findings", "--db", db, "--fail-on", "error").code).toBe(0);
  });
  it("lists connections with the documented JSON fields", () => {
    const out = svctrace("connections", "--db", db, "--json", "--verdict", "consistent")
      .stdout.trim()
      .split("\n");
    expect(out.length).toBe(120);
    const c = JSON.parse(out[0] ?? "{}") as Record<string, unknown>;
    for (const k of [
      "id",
      "proto",
      "client",
      "vip",
      "service",
      "node",
      "hook",
      "endpoint",
      "snat",
      "verdict",
      "start",
      "path",
      "candidates",
    ]) {
      expect(c).toHaveProperty(k);
    }
    expect(svctrace("connections", "--db", db, "--verdict", "nonsense").code).toBe(2);
  });
  it("running analyze again replaces the results", () => {
    expect(svctrace("analyze", "--db", db, "--json").code).toBe(0);
    expect(svctrace("connections", "--db", db, "--json").stdout.trim().split("\n")).toHaveLength(
      120,
    );
  });
});
