import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

// Tests that need root, kernel tools or the shared reference files skip with a reason on a
// developer's machine. In CI they must run: this test turns every such skip into a failure.
const root = join(import.meta.dirname, "..", "..");
const inCI = process.env["CI"] === "true" || process.env["CI"] === "1";

function has(tool: string, args: string[] = ["--version"]): boolean {
  const r = spawnSync(tool, args, { stdio: "ignore" });
  return r.error === undefined;
}

describe.runIf(inCI)("CI has what the root and kernel tests need", () => {
  it("runs as root with network namespaces", () => {
    expect(process.getuid?.()).toBe(0);
    expect(spawnSync("ip", ["netns", "list"]).status).toBe(0);
  });

  it("has the kernel and capture tools", () => {
    const missing = [
      ["iptables-restore", ["--version"]],
      ["iptables-save", ["--version"]],
      ["ip6tables-restore", ["--version"]],
      ["ip6tables-save", ["--version"]],
      ["conntrack", ["--version"]],
      ["tcpdump", ["--version"]],
      ["tshark", ["--version"]],
      ["capinfos", ["-h"]],
      ["ipset", ["--version"]],
    ].filter(([tool, args]) => !has(tool as string, args as string[]));
    expect(missing.map(([tool]) => tool)).toEqual([]);
  });

  it("has the optional libpcap binding built", () => {
    expect(() => createRequire(import.meta.url)("cap")).not.toThrow();
  });

  it("has the shared reference inputs and the sample bundles", () => {
    expect(existsSync(join(root, "..", "shared", "reference", "kube-proxy"))).toBe(true);
    expect(existsSync(join(root, "..", "shared", "reference", "pcapng-conformance"))).toBe(true);
    const bundles = readdirSync(join(root, "traces")).filter((d) =>
      existsSync(join(root, "traces", d, "truth.json")),
    );
    expect(bundles.length).toBeGreaterThanOrEqual(6);
  });
});
