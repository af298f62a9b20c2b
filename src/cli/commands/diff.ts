import type { Command } from "commander";
import { diffRuleSets, type RuleSetDiff } from "../../rules/diff.js";
import { applyRestore } from "../../rules/iptables-save.js";
import { UsageError } from "../../util/errors.js";
import { EXIT_FAIL_ON, ExitRequest } from "../exit.js";
import { loadInventory, loadRuleSet, readTextInput } from "./rules.js";

function pct(p: number): string {
  const v = p * 100;
  return `${Number.isInteger(v) ? v : v.toFixed(1)}%`;
}

export function formatDiff(d: RuleSetDiff, oldName: string, newName: string): string {
  const out: string[] = [`--- ${oldName}`, `+++ ${newName}`];
  if (d.servicePorts.length === 0) out.push("", "No service port changed.");
  for (const p of d.servicePorts) {
    out.push("", `${p.name}  ${p.change}`);
    for (const e of p.endpointsAdded) out.push(`  + endpoint ${e}`);
    for (const e of p.endpointsRemoved) out.push(`  - endpoint ${e}`);
    for (const e of p.localEndpointsAdded) out.push(`  + local endpoint ${e}`);
    for (const e of p.localEndpointsRemoved) out.push(`  - local endpoint ${e}`);
    for (const c of p.probabilityChanges)
      out.push(`  ~ ${c.endpoint} probability ${pct(c.old)} -> ${pct(c.new)}`);
    for (const f of p.fieldChanges)
      out.push(`  ~ ${f.field}: ${JSON.stringify(f.old)} -> ${JSON.stringify(f.new)}`);
  }
  out.push("");
  if (d.masqueradeMark !== null)
    out.push(`Masquerade mark: ${d.masqueradeMark.old} -> ${d.masqueradeMark.new}`);
  out.push(
    `Leaked chains (in NEW, nothing jumps to them): ${d.leakedChains.length === 0 ? "none" : d.leakedChains.join(" ")}`,
  );
  if (d.newlyLeakedChains.length > 0) out.push(`  newly leaked: ${d.newlyLeakedChains.join(" ")}`);
  if (d.danglingJumps.length > 0) {
    out.push("Dangling jumps in NEW:");
    for (const r of d.danglingJumps)
      out.push(
        `  ${r.table} ${r.chain} #${r.index} (${r.source === undefined ? "" : `${r.source} `}line ${r.line}): ${r.rule}`,
      );
  }
  out.push(`Raw chain differences: ${d.chains.length === 0 ? "none" : d.chains.length}`);
  for (const c of d.chains) {
    const what = c.reordered ? "reordered" : `+${c.rulesAdded.length} -${c.rulesRemoved.length}`;
    out.push(`  ${c.table} ${c.chain} ${c.change} ${what}`);
    for (const r of c.rulesRemoved) out.push(`    - ${r.rule}`);
    for (const r of c.rulesAdded) out.push(`    + ${r.rule}`);
  }
  return `${out.join("\n")}\n`;
}

export function registerDiff(program: Command): void {
  program
    .command("diff")
    .description(
      "what changed between two rule sets, per service: endpoints added/removed, probabilities, masquerade and policies, leaked chains; plus raw chain differences",
    )
    .argument("<old>", "iptables-save dump (before)")
    .argument(
      "<new>",
      "iptables-save dump (after), or with --apply an iptables-restore --noflush input",
    )
    .option("--apply", "NEW is a partial restore (kube-proxy's --noflush input) applied on OLD")
    .option(
      "--inventory <file>",
      "kubectl get svc,endpointslices -A -o json: names chains when comments are missing",
    )
    .option(
      "--fail-on <what>",
      "exit 3 when: changes (any service port changed), leaks (leaked chains or dangling jumps in NEW)",
    )
    .option("--json", "print one JSON object")
    .action(
      (
        oldFile: string,
        newFile: string,
        opts: { apply?: boolean; inventory?: string; failOn?: string; json?: boolean },
      ) => {
        if (opts.failOn !== undefined && !["changes", "leaks"].includes(opts.failOn)) {
          throw new UsageError(
            `--fail-on ${JSON.stringify(opts.failOn)}: expected changes or leaks`,
          );
        }
        const oldRs = loadRuleSet([oldFile]);
        const newRs =
          opts.apply === true
            ? applyRestore(oldRs, readTextInput(newFile), { source: newFile, noflush: true })
            : loadRuleSet([newFile]);
        const inventory = loadInventory(opts.inventory);
        const d = diffRuleSets(oldRs, newRs, inventory === undefined ? {} : { inventory });
        if (opts.json === true)
          process.stdout.write(
            `${JSON.stringify({ old: oldFile, new: newFile, ...d }, null, 2)}\n`,
          );
        else process.stdout.write(formatDiff(d, oldFile, newFile));
        const hit =
          (opts.failOn === "changes" && d.servicePorts.length > 0) ||
          (opts.failOn === "leaks" && (d.leakedChains.length > 0 || d.danglingJumps.length > 0));
        if (hit) throw new ExitRequest(EXIT_FAIL_ON);
      },
    );
}
