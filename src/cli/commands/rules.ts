import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import type { Command } from "commander";
import { applyRestore, parseIptablesSave } from "../../rules/iptables-save.js";
import { buildKubeModel, type KubeModel, type KubeServicePort } from "../../rules/kube-model.js";
import { endpointString } from "../../rules/kube-names.js";
import { type InventorySnapshot, parseKubernetes } from "../../rules/kubernetes.js";
import type { RuleSet } from "../../rules/model.js";
import { InputError } from "../../util/errors.js";
import { formatTimeISO } from "../../util/time.js";

/** A text input, gunzipped when it starts with the gzip magic. */
export function readTextInput(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new InputError(
      `cannot read: ${(error as Error).message}`,
      { file: path },
      { cause: error },
    );
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (error) {
      throw new InputError(
        `bad gzip data: ${(error as Error).message}`,
        { file: path },
        { cause: error },
      );
    }
  }
  return bytes.toString("utf8");
}

/** A dump followed by iptables-restore --noflush inputs applied in order. */
export function loadRuleSet(files: string[]): RuleSet {
  const [first, ...rest] = files;
  if (first === undefined) throw new InputError("no rule file given");
  let rs = parseIptablesSave(readTextInput(first), { source: first });
  for (const f of rest) rs = applyRestore(rs, readTextInput(f), { source: f, noflush: true });
  return rs;
}

export function loadInventory(path: string | undefined): InventorySnapshot | undefined {
  return path === undefined ? undefined : parseKubernetes(readTextInput(path), { source: path });
}

function pct(p: number): string {
  const v = p * 100;
  return `${Number.isInteger(v) ? v : v.toFixed(1)}%`;
}

function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  }
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("   ")
      .trimEnd(),
  );
}

function externalColumn(p: KubeServicePort): string {
  const parts = [
    ...p.externalIPs.map((x) => `ext ${x.ip}`),
    ...p.loadBalancerIPs.map((x) => `lb ${x.ip}`),
    ...p.otherExternal.map((x) => `${x.ip}`),
  ];
  return parts.length === 0 ? "-" : parts.join(",");
}

function endpointsColumn(p: KubeServicePort): string {
  const eps = p.endpoints.map(
    (e) =>
      `${e.endpoint || e.chain} ${pct(e.probability)}${e.broken === null ? "" : ` (${e.broken})`}`,
  );
  const local = p.localEndpoints.map((e) => `local ${e.endpoint || e.chain} ${pct(e.probability)}`);
  const all = [...eps, ...local];
  if (all.length > 0) return all.join(", ");
  const verdicts = [...new Set(p.noEndpoints.map((n) => n.verdict))];
  return verdicts.length === 0 ? "<none>" : `<none> (${verdicts.join("/")})`;
}

/** The kube model as a kubectl-like table plus the rule-level findings. */
export function formatKubeModel(model: KubeModel, rs: RuleSet): string {
  const rows: string[][] = [
    [
      "SERVICE PORT",
      "PROTO",
      "CLUSTER-IP",
      "NODEPORTS",
      "EXTERNAL",
      "POLICY(INT/EXT)",
      "MASQ",
      "AFFINITY",
      "ENDPOINTS",
    ],
  ];
  for (const p of model.servicePorts) {
    rows.push([
      p.name,
      p.protocol,
      p.clusterIP === null ? "-" : endpointString(p.clusterIP, p.port ?? 0),
      p.nodePorts.length === 0 ? "-" : p.nodePorts.join(","),
      externalColumn(p),
      `${p.internalTrafficPolicy ?? "-"}/${p.externalTrafficPolicy ?? "-"}`,
      p.clusterIPMasquerade === "off-cluster" ? "off-cluster" : (p.clusterIPMasquerade ?? "-"),
      p.affinitySeconds === null ? "-" : `ClientIP ${p.affinitySeconds}s`,
      endpointsColumn(p),
    ]);
  }
  const out: string[] = [];
  const when = rs.takenAt === null ? "time unknown" : formatTimeISO(rs.takenAt);
  out.push(`${rs.source}: ${rs.family}, ${rs.generator ?? "no header"}, ${when}`);
  out.push("");
  out.push(...table(rows));
  out.push("");
  const ranges = model.servicePorts.filter((p) => p.loadBalancerSourceRanges.length > 0);
  for (const p of ranges)
    out.push(`Source ranges ${p.name}: ${p.loadBalancerSourceRanges.join(", ")}`);
  const hc = model.servicePorts.filter((p) => p.healthCheckNodePort !== null);
  for (const p of hc) out.push(`Health check node port ${p.name}: ${p.healthCheckNodePort}`);
  const dropped = model.servicePorts.filter((p) => p.noEndpoints.length > 0);
  for (const p of dropped) {
    out.push(
      `No ${p.endpoints.length > 0 ? "local " : ""}endpoints ${p.name}: ${p.noEndpoints.map((n) => `${n.verdict} ${n.destination}`).join(", ")}`,
    );
  }
  out.push(
    `Masquerade mark: ${model.masqueradeMark ?? "-"}${model.masqueradeRandomFully === true ? " (MASQUERADE --random-fully)" : ""}`,
  );
  out.push(
    `Orphan chains (nothing jumps to them): ${model.orphanChains.length === 0 ? "none" : model.orphanChains.join(" ")}`,
  );
  const unreachable = model.unreachableChains.filter((c) => !model.orphanChains.includes(c));
  if (unreachable.length > 0) out.push(`Unreachable chains: ${unreachable.join(" ")}`);
  out.push(`Dangling jumps: ${model.danglingJumps.length === 0 ? "none" : ""}`.trimEnd());
  for (const r of model.danglingJumps)
    out.push(
      `  ${r.table} ${r.chain} #${r.index} (${r.source === undefined ? "" : `${r.source} `}line ${r.line}): ${r.rule}`,
    );
  out.push(`Unmodelled rules: ${model.unmodelled.length === 0 ? "none" : model.unmodelled.length}`);
  for (const r of model.unmodelled)
    out.push(
      `  ${r.table} ${r.chain} #${r.index} (${r.source === undefined ? "" : `${r.source} `}line ${r.line}): ${r.rule}`,
    );
  const unknown: string[] = [];
  for (const t of rs.tables.values()) {
    for (const c of t.chains.values()) {
      for (const r of c.rules) {
        if (r.unknown.length > 0)
          unknown.push(
            `  ${t.name} ${c.name} #${r.index} (${r.source === undefined ? "" : `${r.source} `}line ${r.line}): ${r.unknown.join("; ")}`,
          );
      }
    }
  }
  if (unknown.length > 0)
    out.push(`Not understood by the parser (kept): ${unknown.length}`, ...unknown);
  return `${out.join("\n")}\n`;
}

export function registerRules(program: Command): void {
  program
    .command("rules")
    .description(
      "what kube-proxy meant: service ports, endpoints with probabilities, services without endpoints, orphan chains, unmodelled rules",
    )
    .argument(
      "<files...>",
      "an iptables-save dump, then any iptables-restore --noflush inputs to apply in order",
    )
    .option(
      "--inventory <file>",
      "kubectl get svc,endpointslices -A -o json: names chains when comments are missing",
    )
    .option("--json", "print one JSON object")
    .action((files: string[], opts: { inventory?: string; json?: boolean }) => {
      const rs = loadRuleSet(files);
      const inventory = loadInventory(opts.inventory);
      const model = buildKubeModel(rs, inventory === undefined ? {} : { inventory });
      if (opts.json === true) {
        const rules = [...rs.tables.values()].reduce(
          (n, t) => n + [...t.chains.values()].reduce((m, c) => m + c.rules.length, 0),
          0,
        );
        const out = {
          source: rs.source,
          files,
          takenAt: rs.takenAt,
          generator: rs.generator,
          rules,
          ...model,
        };
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      process.stdout.write(formatKubeModel(model, rs));
    });
}
