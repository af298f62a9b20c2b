/**
 * Outcomes as short sentences for people: "58.3% DNAT to 10.180.0.1:80 via KUBE-SERVICES#3 →
 * KUBE-SVC-… → KUBE-SEP-…, masqueraded".
 */

import type { Outcome, SimResult } from "./types.js";

export function formatPercent(p: number): string {
  if (p === 1) return "100%";
  const pct = p * 100;
  return `${pct >= 10 ? pct.toFixed(1) : pct.toPrecision(3)}%`;
}

const BUILTIN_CHAINS = new Set(["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]);

/**
 * The rules that explain the verdict as chain#index hops: the nat hops up to the DNAT for a
 * translated packet, the hops of the deciding table otherwise, as the chain call stack at the
 * moment of the decision (built-in chains left out); `--json` has the whole path.
 */
export function formatPath(o: Outcome): string {
  let steps = o.path;
  if (o.verdict === "DNAT" || (o.verdict === "ACCEPT" && o.decidedBy === "policy")) {
    let end = steps.length - 1;
    while (end >= 0 && !/ -j DNAT\b/.test(steps[end]?.rule ?? "")) end--;
    steps = steps.slice(0, end + 1).filter((s) => s.table === "nat");
  } else {
    const table = steps[steps.length - 1]?.table;
    steps = steps.filter((s) => s.table === table);
  }
  // The call stack at the decision: a chain met again means the jumps after it returned.
  const hops: Array<{ chain: string; text: string }> = [];
  for (const s of steps) {
    if (BUILTIN_CHAINS.has(s.chain)) continue;
    const text = `${s.table === "filter" || s.table === "nat" ? "" : `${s.table}:`}${s.chain}#${s.index}`;
    const k = hops.findIndex((h) => h.chain === s.chain);
    if (k >= 0) hops.length = k;
    hops.push({ chain: s.chain, text });
  }
  return hops.map((h) => h.text).join(" → ");
}

export function describeOutcome(o: Outcome): string {
  let head: string;
  switch (o.verdict) {
    case "DNAT":
      head = `DNAT to ${o.endpoint}`;
      break;
    case "ACCEPT":
      head = `ACCEPT untranslated (${o.delivery === "local" ? "delivered locally" : "forwarded"})`;
      break;
    case "DROP":
      head = o.endpoint === null ? "DROP" : `DROP after DNAT to ${o.endpoint}`;
      break;
    case "REJECT":
      head = `REJECT (${o.rejectWith ?? "icmp-port-unreachable"})${o.endpoint === null ? "" : ` after DNAT to ${o.endpoint}`}`;
      break;
  }
  const parts = [`${formatPercent(o.probability)} ${head}`];
  const path = formatPath(o);
  if (path !== "") parts[0] += ` via ${path}`;
  if (o.decidedBy === "policy") parts.push(`by ${o.verdict === "DROP" ? "DROP" : "ACCEPT"} policy`);
  if (o.masquerade) parts.push(o.snat === null ? "masqueraded" : `masqueraded as ${o.snat}`);
  else if (o.snat !== null) parts.push(`SNAT to ${o.snat}`);
  if (o.verdict === "DNAT" && o.filterVerdict !== "ACCEPT") parts.push(`filter ${o.filterVerdict}`);
  let line = parts.join(", ");
  if (o.assumed.length > 0) line += `\n      assuming: ${o.assumed.join("; ")}`;
  if (o.unmodelled) line += "\n      rests on an unmodelled match or target (see below)";
  return line;
}

export function describeResult(r: SimResult): string {
  const lines = r.outcomes.map((o) => `  ${describeOutcome(o)}`);
  for (const u of r.unmodelled) {
    lines.push(`  unmodelled: ${u.what} at line ${u.line} (${u.table} ${u.chain}): ${u.rule}`);
  }
  return lines.join("\n");
}
