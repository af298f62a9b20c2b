import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, normalize, relative, sep } from "node:path";
import { describe, expect, it } from "vitest";

// DESIGN.md's module table: each module and the modules it may import.
const allowed: Record<string, string[]> = {
  util: [],
  capture: ["util"],
  decode: ["capture", "util"],
  flow: ["decode", "capture", "util"],
  rules: ["util"],
  netfilter: ["rules", "util"],
  store: ["flow", "decode", "capture", "rules", "util"],
  ingest: ["capture", "decode", "flow", "rules", "store", "util"],
  reconstruct: ["store", "netfilter", "rules", "flow", "decode", "util"],
  checks: ["store", "netfilter", "rules", "reconstruct", "flow", "util"],
  report: ["store", "checks", "reconstruct", "rules", "util"],
  lab: ["rules", "netfilter", "capture", "util"],
  replay: ["netfilter", "rules", "store", "lab", "util"],
  cli: ["*"],
};

const srcRoot = join(import.meta.dirname, "..", "..", "src");

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...tsFiles(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

describe("layering", () => {
  it("has a rule for every module under src/", () => {
    for (const name of readdirSync(srcRoot)) {
      if (statSync(join(srcRoot, name)).isDirectory()) expect(allowed, name).toHaveProperty(name);
    }
  });

  it("lower modules never import higher ones", () => {
    const violations: string[] = [];
    for (const file of tsFiles(srcRoot)) {
      const mine = relative(srcRoot, file).split(sep)[0] ?? "";
      const may = allowed[mine] ?? [];
      if (may.includes("*")) continue;
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.[^"']+)["']/g)) {
        const target = normalize(join(file, "..", match[1] ?? ""));
        const theirs = relative(srcRoot, target).split(sep)[0] ?? "";
        if (theirs === mine || theirs.startsWith("..")) continue;
        if (!may.includes(theirs))
          violations.push(`${relative(srcRoot, file)} imports ${match[1]}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("only src/cli prints or exits", () => {
    const violations: string[] = [];
    for (const file of tsFiles(srcRoot)) {
      const mine = relative(srcRoot, file).split(sep)[0] ?? "";
      if (mine === "cli" || mine === "lab") continue;
      const text = readFileSync(file, "utf8");
      if (/console\.(log|error|warn)|process\.exit\(|process\.(stdout|stderr)\.write/.test(text)) {
        violations.push(relative(srcRoot, file));
      }
    }
    expect(violations).toEqual([]);
  });
});
