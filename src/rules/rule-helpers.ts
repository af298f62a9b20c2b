/**
 * Reading parsed rules without string comparisons: option look-ups, marks and probabilities as
 * numbers, the equivalences between the forms kube-proxy writes and iptables-save prints.
 */

import type { Rule, RuleMatch, RuleOption, RuleTarget } from "./model.js";

/** Long aliases → the name iptables-save prints, so callers can ask for one name. */
const ALIASES: Record<string, string> = {
  "--source": "-s",
  "--src": "-s",
  "--destination": "-d",
  "--dst": "-d",
  "--protocol": "-p",
  "--in-interface": "-i",
  "--out-interface": "-o",
  "--fragment": "-f",
  "--source-port": "--sport",
  "--destination-port": "--dport",
  "--source-ports": "--sports",
  "--destination-ports": "--dports",
};

export function canonicalOptionName(name: string): string {
  return ALIASES[name] ?? name;
}

/**
 * The option `name` of match `module` ("" for -s/-d/-p/-i/-o), or undefined. Aliases are
 * folded (`--destination-port` is found as `--dport`). For a protocol module ("tcp") the
 * implicit match loaded by `-p tcp` counts too.
 */
export function findOption(rule: Rule, module: string, name: string): RuleOption | undefined {
  const want = canonicalOptionName(name);
  for (const m of rule.matches) {
    if (m.module !== module) continue;
    for (const o of m.options) if (canonicalOptionName(o.name) === want) return o;
  }
  return undefined;
}

/** First value of an option, or undefined when absent. */
export function optionValue(rule: Rule, module: string, name: string): string | undefined {
  return findOption(rule, module, name)?.values[0];
}

/** True when the option is present (and, for flags such as `--rcheck`, not negated). */
export function hasOption(rule: Rule, module: string, name: string): boolean {
  return findOption(rule, module, name) !== undefined;
}

export function targetOption(target: RuleTarget | null, name: string): RuleOption | undefined {
  if (target === null) return undefined;
  for (const o of target.options) if (o.name === name) return o;
  return undefined;
}

export function findMatch(rule: Rule, module: string): RuleMatch | undefined {
  return rule.matches.find((m) => m.module === module);
}

/** A 32-bit value and mask, as `--mark 0x4000/0x4000` means `(mark & mask) == value`. */
export interface Mark {
  value: number;
  mask: number;
}

function parseU32(text: string): number | null {
  const t = text.trim();
  if (!/^(0[xX][0-9a-fA-F]+|\d+)$/.test(t)) return null;
  const n = t.startsWith("0x") || t.startsWith("0X") ? Number.parseInt(t.slice(2), 16) : Number(t);
  return Number.isFinite(n) && n <= 0xffffffff ? n >>> 0 : null;
}

/** `0x4000/0x4000`, `0x4000` (mask 0xffffffff), decimal too. Null when not a mark. */
export function parseMark(text: string): Mark | null {
  const slash = text.indexOf("/");
  const value = parseU32(slash < 0 ? text : text.slice(0, slash));
  const mask = slash < 0 ? 0xffffffff : parseU32(text.slice(slash + 1));
  if (value === null || mask === null) return null;
  return { value, mask };
}

/**
 * What a MARK (or CONNMARK) target does, as the kernel's single operation
 * `mark = (mark & ~mask) ^ value` (xt_MARK v2). `--or-mark 0x4000` and `--set-xmark
 * 0x4000/0x4000` give the same result, so they compare equal here. Null when the target sets
 * no mark or its value is unreadable.
 */
export function markTargetOperation(target: RuleTarget): Mark | null {
  for (const o of target.options) {
    const v = o.values[0];
    if (v === undefined) continue;
    switch (o.name) {
      case "--set-xmark":
        return parseMark(v);
      case "--set-mark": {
        const m = parseMark(v);
        return m === null ? null : { value: m.value, mask: (m.mask | m.value) >>> 0 };
      }
      case "--or-mark": {
        const n = parseU32(v);
        return n === null ? null : { value: n, mask: n };
      }
      case "--xor-mark": {
        const n = parseU32(v);
        return n === null ? null : { value: n, mask: 0 };
      }
      case "--and-mark": {
        const n = parseU32(v);
        return n === null ? null : { value: 0, mask: ~n >>> 0 };
      }
    }
  }
  return null;
}

/** Apply a mark operation to a packet's mark. */
export function applyMark(mark: number, op: Mark): number {
  return ((mark & ~op.mask) ^ op.value) >>> 0;
}

/** Does `--mark value/mask` match this packet mark? */
export function markMatches(mark: number, m: Mark): boolean {
  return (mark & m.mask) >>> 0 === m.value;
}

/**
 * `--probability` as a number in [0, 1], or null when the text is not one. Both kube-proxy's
 * `0.3333333333` and iptables-save's `0.33333333349` are accepted.
 */
export function parseProbability(text: string): number | null {
  if (!/^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(text.trim())) return null;
  const p = Number(text);
  return p >= 0 && p <= 1 ? p : null;
}

/**
 * The probability the kernel really applies: xt_statistic keeps `round(p * 2^31)` as a
 * 32-bit threshold, so 0.3333333333 becomes 0.33333333349... This is what iptables-save prints.
 */
export function kernelProbability(p: number): number {
  return Math.round(p * 0x80000000) / 0x80000000;
}

/** Two probabilities the kernel cannot tell apart (same 31-bit threshold). */
export function sameProbability(a: number, b: number): boolean {
  return Math.round(a * 0x80000000) === Math.round(b * 0x80000000);
}

/**
 * A port or range `80`, `1000:2000`, `:1024`, `1024:` → [lo, hi]. Null when malformed.
 * Service names (`http`) are not resolved and give null.
 */
export function parsePortRange(text: string): [number, number] | null {
  const c = text.indexOf(":");
  const lo = c < 0 ? text : text.slice(0, c);
  const hi = c < 0 ? text : text.slice(c + 1);
  const a = lo === "" ? 0 : /^\d+$/.test(lo) ? Number(lo) : Number.NaN;
  const b = hi === "" ? 65535 : /^\d+$/.test(hi) ? Number(hi) : Number.NaN;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a > 65535 || b > 65535) return null;
  return a <= b ? [a, b] : [b, a];
}
