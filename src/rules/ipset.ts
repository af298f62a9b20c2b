/**
 * `ipset save` output: `create NAME TYPE [options]` and `add NAME MEMBER [options]` lines.
 * Enough for the simulator's `-m set --match-set NAME src,dst`: sets with their members, and a
 * membership test that understands ip, net (CIDR), port (`tcp:80`, ranges) and set dimensions.
 */

import { InputError, quoteInput } from "../util/errors.js";
import { cidrContains, normalizeIP, parseCidr } from "../util/ip.js";
import { tokenizeRule } from "./tokenize.js";

export interface IpSetMember {
  /** The member as written: `10.0.0.1,tcp:80`. */
  text: string;
  /** One element per dimension of the set type. */
  parts: string[];
  /** Per-member options (timeout, comment, packets…); flags such as nomatch map to "". */
  options: Record<string, string>;
  nomatch: boolean;
  line: number;
}

export interface IpSet {
  name: string;
  /** e.g. "hash:ip,port". */
  type: string;
  /** The dimensions of the type: ["ip", "port"]. */
  dimensions: string[];
  family: "inet" | "inet6" | null;
  options: Record<string, string>;
  members: IpSetMember[];
  line: number;
}

const FLAG_OPTIONS = new Set(["nomatch", "counters", "comment", "skbinfo", "forceadd"]);

/** Parse `ipset save` (or `ipset restore` input without destroy/flush lines). */
export function parseIpsetSave(text: string, options: { source: string }): Map<string, IpSet> {
  const sets = new Map<string, IpSet>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const rawLine = lines[i] as string;
    const lineNo = i + 1;
    const raw = rawLine.replace(/\r$/, "");
    const line = raw.trim();
    if (line === "" || line[0] === "#" || line === "COMMIT") continue;
    const fail = (reason: string): never => {
      throw new InputError(`${reason}: ${quoteInput(raw)}`, { file: options.source, line: lineNo });
    };
    const toks = tokenizeRule(line);
    if (typeof toks === "string") return fail(toks);
    const words = toks.map((t) => t.text);
    const [cmd, name, third] = words;
    if (cmd === "create" || cmd === "-N" || cmd === "n") {
      if (name === undefined || third === undefined) return fail("create needs a name and a type");
      if (sets.has(name)) return fail(`set ${name} already created`);
      const opts = readOptions(words.slice(3), fail, false);
      const family = opts["family"];
      sets.set(name, {
        name,
        type: third,
        dimensions: (third.split(":")[1] ?? "").split(","),
        family: family === "inet" || family === "inet6" ? family : null,
        options: opts,
        members: [],
        line: lineNo,
      });
    } else if (cmd === "add" || cmd === "-A" || cmd === "a") {
      if (name === undefined || third === undefined)
        return fail("add needs a set name and a member");
      const set = sets.get(name);
      if (set === undefined) return fail(`set ${name} was not created`);
      const opts = readOptions(words.slice(3), fail, true);
      const parts = third.split(",");
      if (
        set.dimensions.length > 0 &&
        parts.length !== set.dimensions.length &&
        !set.type.startsWith("list:")
      ) {
        fail(
          `member has ${parts.length} parts, set type ${set.type} needs ${set.dimensions.length}`,
        );
      }
      set.members.push({
        text: third,
        parts,
        options: opts,
        nomatch: "nomatch" in opts,
        line: lineNo,
      });
    } else {
      fail("not an ipset create/add line");
    }
  }
  return sets;
}

function readOptions(
  words: string[],
  fail: (r: string) => never,
  member: boolean,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < words.length; i++) {
    const w = words[i] as string;
    // In create lines "comment"/"counters" are flags; in add lines they take a value.
    if (FLAG_OPTIONS.has(w) && !(member && (w === "comment" || w === "skbinfo"))) {
      out[w] = "";
      continue;
    }
    const v = words[i + 1];
    if (v === undefined) return fail(`option ${w} needs a value`);
    out[w] = v;
    i++;
  }
  return out;
}

/**
 * Does the set hold this packet? `values` has one element per dimension, as `--match-set NAME
 * src,dst` picks them: an IP, or `proto:port` for port dimensions (`tcp:80`). `nomatch`
 * members (hash:net exceptions) win over plain ones, as in the kernel. list:set sets test
 * their member sets in order.
 */
export function ipsetContains(
  sets: Map<string, IpSet>,
  name: string,
  values: string[],
  depth = 0,
): boolean {
  const set = sets.get(name);
  if (set === undefined || depth > 8) return false;
  if (set.type.startsWith("list:")) {
    return set.members.some((m) => ipsetContains(sets, m.parts[0] ?? "", values, depth + 1));
  }
  let hit = false;
  for (const m of set.members) {
    if (!memberMatches(set, m, values)) continue;
    if (m.nomatch) return false;
    hit = true;
  }
  return hit;
}

function memberMatches(set: IpSet, m: IpSetMember, values: string[]): boolean {
  for (let d = 0; d < set.dimensions.length; d++) {
    const kind = set.dimensions[d];
    const want = values[d];
    const have = m.parts[d];
    if (want === undefined || have === undefined) return false;
    if (kind === "ip") {
      // hash:ip members may be ranges or CIDRs too (stored as single addresses by the kernel).
      if (have.includes("/")) {
        const c = parseCidr(have);
        if (c === null || !cidrContains(c, want)) return false;
      } else if (normalizeIP(have) !== normalizeIP(want)) return false;
    } else if (kind === "net") {
      const c = parseCidr(have.includes("/") ? have : `${have}/${have.includes(":") ? 128 : 32}`);
      if (c === null || !cidrContains(c, want)) return false;
    } else if (kind === "port") {
      if (!portMatches(have, want)) return false;
    } else if (have !== want) return false;
  }
  return true;
}

function portMatches(have: string, want: string): boolean {
  // bitmap:port members carry no protocol: any protocol's port matches.
  const [hp, hport] = have.includes(":") ? have.split(":") : [null, have];
  const [wp, wport] = want.includes(":") ? want.split(":") : [null, want];
  if (hp !== null && wp !== null && hp !== wp) return false;
  const n = Number(wport);
  const range = (hport ?? "").split("-");
  const lo = Number(range[0]);
  const hi = Number(range[1] ?? range[0]);
  return n >= lo && n <= hi;
}
