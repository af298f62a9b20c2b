/**
 * One rule's argument list → matches and target. The grouping follows iptables' own: options
 * after `-m X` belong to X until the next -m/-j/-g; builtin options (-s -d -p -i -o -f) belong
 * to module "" wherever they appear; a protocol option (`--dport`) that the open module does
 * not know goes to the protocol's implicit match, as `-p tcp --dport 80` loads "tcp" unasked.
 */

import type { RuleMatch, RuleOption, RuleTarget } from "./model.js";
import type { Token } from "./tokenize.js";

const BUILTIN_OPTIONS = new Set([
  "-s",
  "--source",
  "--src",
  "-d",
  "--destination",
  "--dst",
  "-p",
  "--protocol",
  "-i",
  "--in-interface",
  "-o",
  "--out-interface",
  "-f",
  "--fragment",
  "-4",
  "--ipv4",
  "-6",
  "--ipv6",
]);

/** Builtins that take no value. */
const BUILTIN_FLAGS = new Set(["-f", "--fragment", "-4", "--ipv4", "-6", "--ipv6"]);

const PROTOCOL_OPTIONS: Record<string, Set<string>> = {
  tcp: new Set([
    "--sport",
    "--source-port",
    "--dport",
    "--destination-port",
    "--tcp-flags",
    "--syn",
    "--tcp-option",
  ]),
  udp: new Set(["--sport", "--source-port", "--dport", "--destination-port"]),
  udplite: new Set(["--sport", "--source-port", "--dport", "--destination-port"]),
  sctp: new Set(["--sport", "--source-port", "--dport", "--destination-port", "--chunk-types"]),
  dccp: new Set([
    "--sport",
    "--source-port",
    "--dport",
    "--destination-port",
    "--dccp-types",
    "--dccp-option",
  ]),
  icmp: new Set(["--icmp-type"]),
  icmpv6: new Set(["--icmpv6-type"]),
  "ipv6-icmp": new Set(["--icmpv6-type"]),
  icmp6: new Set(["--icmpv6-type"]),
};

/** Options of the match modules svctrace knows; an option outside its module's set is flagged. */
export const KNOWN_MATCH_OPTIONS: Record<string, Set<string>> = {
  ...PROTOCOL_OPTIONS,
  comment: new Set(["--comment"]),
  addrtype: new Set(["--src-type", "--dst-type", "--limit-iface-in", "--limit-iface-out"]),
  conntrack: new Set([
    "--ctstate",
    "--ctproto",
    "--ctorigsrc",
    "--ctorigdst",
    "--ctreplsrc",
    "--ctrepldst",
    "--ctorigsrcport",
    "--ctorigdstport",
    "--ctreplsrcport",
    "--ctrepldstport",
    "--ctstatus",
    "--ctexpire",
    "--ctdir",
  ]),
  state: new Set(["--state"]),
  mark: new Set(["--mark"]),
  connmark: new Set(["--mark"]),
  statistic: new Set(["--mode", "--probability", "--every", "--packet"]),
  recent: new Set([
    "--name",
    "--set",
    "--rcheck",
    "--update",
    "--remove",
    "--seconds",
    "--reap",
    "--hitcount",
    "--rttl",
    "--rsource",
    "--rdest",
    "--mask",
  ]),
  multiport: new Set(["--sports", "--source-ports", "--dports", "--destination-ports", "--ports"]),
  set: new Set([
    "--match-set",
    "--set",
    "--return-nomatch",
    "--update-counters",
    "--update-subcounters",
    "--packets-eq",
    "--packets-lt",
    "--packets-gt",
    "--bytes-eq",
    "--bytes-lt",
    "--bytes-gt",
  ]),
  nfacct: new Set(["--nfacct-name"]),
  limit: new Set(["--limit", "--limit-burst"]),
  physdev: new Set([
    "--physdev-in",
    "--physdev-out",
    "--physdev-is-in",
    "--physdev-is-out",
    "--physdev-is-bridged",
  ]),
  iprange: new Set(["--src-range", "--dst-range"]),
  socket: new Set(["--transparent", "--nowildcard", "--restore-skmark"]),
  owner: new Set(["--uid-owner", "--gid-owner", "--socket-exists", "--suppl-groups"]),
  pkttype: new Set(["--pkt-type"]),
  length: new Set(["--length"]),
  mac: new Set(["--mac-source"]),
};

/** Targets svctrace knows, with their options. Any other name is a chain or an extension. */
export const KNOWN_TARGET_OPTIONS: Record<string, Set<string>> = {
  ACCEPT: new Set(),
  DROP: new Set(),
  RETURN: new Set(),
  QUEUE: new Set(),
  NOTRACK: new Set(),
  TRACE: new Set(),
  REJECT: new Set(["--reject-with"]),
  DNAT: new Set(["--to-destination", "--random", "--persistent"]),
  SNAT: new Set(["--to-source", "--random", "--random-fully", "--persistent"]),
  MASQUERADE: new Set(["--to-ports", "--random", "--random-fully"]),
  REDIRECT: new Set(["--to-ports", "--random"]),
  MARK: new Set(["--set-mark", "--set-xmark", "--or-mark", "--and-mark", "--xor-mark"]),
  CONNMARK: new Set([
    "--set-mark",
    "--set-xmark",
    "--save-mark",
    "--restore-mark",
    "--and-mark",
    "--or-mark",
    "--xor-mark",
    "--mask",
    "--nfmask",
    "--ctmask",
  ]),
  LOG: new Set([
    "--log-level",
    "--log-prefix",
    "--log-tcp-sequence",
    "--log-tcp-options",
    "--log-ip-options",
    "--log-uid",
    "--log-macdecode",
  ]),
  NFLOG: new Set([
    "--nflog-group",
    "--nflog-prefix",
    "--nflog-range",
    "--nflog-size",
    "--nflog-threshold",
  ]),
  CT: new Set([
    "--notrack",
    "--helper",
    "--ctevents",
    "--expevents",
    "--zone",
    "--zone-orig",
    "--zone-reply",
    "--timeout",
  ]),
};

/** Options that never take a value, so a following `!` negates the next option. */
const FLAGS = new Set([
  "--syn",
  "--set",
  "--rcheck",
  "--update",
  "--remove",
  "--reap",
  "--rttl",
  "--rsource",
  "--rdest",
  "--random",
  "--random-fully",
  "--persistent",
  "--save-mark",
  "--restore-mark",
  "--notrack",
  "--log-tcp-sequence",
  "--log-tcp-options",
  "--log-ip-options",
  "--log-uid",
  "--log-macdecode",
  "--return-nomatch",
  "--update-counters",
  "--update-subcounters",
  "--physdev-is-in",
  "--physdev-is-out",
  "--physdev-is-bridged",
  "--transparent",
  "--nowildcard",
  "--restore-skmark",
  "--socket-exists",
  "--suppl-groups",
]);

const PROTOCOL_NAMES: Record<string, string> = {
  "6": "tcp",
  "17": "udp",
  "132": "sctp",
  "1": "icmp",
  "58": "icmpv6",
  "136": "udplite",
  "33": "dccp",
};

function isOptionToken(t: Token): boolean {
  if (t.quoted || t.text.length < 2 || t.text[0] !== "-") return false;
  const c = t.text.charCodeAt(1);
  // "-1" is a value (a negative number), "-x" and "--x" are options.
  return c === 45 || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || t.text === "-4";
}

export interface ParsedSpec {
  matches: RuleMatch[];
  target: RuleTarget | null;
  unknown: string[];
  /** `-c PKTS BYTES` inside the rule (iptables-restore's per-rule counters form). */
  counters: { packets: number; bytes: number } | null;
}

/**
 * Group the arguments after `-A CHAIN`. Returns a string (the reason) for input iptables
 * itself would refuse; unknown-but-plausible things go to `unknown` instead.
 */
export function parseRuleSpec(tokens: Token[], start: number): ParsedSpec | string {
  const matches: RuleMatch[] = [];
  const unknown: string[] = [];
  let target: RuleTarget | null = null;
  let counters: ParsedSpec["counters"] = null;
  // Where non-builtin options currently go.
  let current: RuleMatch | RuleTarget | null = null;
  let currentIsTarget = false;
  let builtin: RuleMatch | null = null;
  let protocol: string | null = null;
  let pendingNegation = false;

  const builtinMatch = (): RuleMatch => {
    if (builtin === null) {
      builtin = { module: "", options: [] };
      matches.push(builtin);
    }
    return builtin;
  };

  let i = start;
  while (i < tokens.length) {
    const tok = tokens[i] as Token;
    if (tok.text === "!" && !tok.quoted) {
      if (pendingNegation) return "double negation";
      pendingNegation = true;
      i++;
      continue;
    }
    if (!isOptionToken(tok)) {
      unknown.push(`stray argument ${JSON.stringify(tok.text)}`);
      i++;
      continue;
    }
    const name = tok.text;
    i++;
    if (name === "-m" || name === "--match") {
      if (pendingNegation) return `cannot negate ${name}`;
      const mod = tokens[i];
      if (mod === undefined || isOptionToken(mod)) return `${name} needs a module name`;
      i++;
      const match: RuleMatch = { module: mod.text, options: [] };
      if (!(mod.text in KNOWN_MATCH_OPTIONS)) unknown.push(`match ${mod.text}`);
      matches.push(match);
      current = match;
      currentIsTarget = false;
      continue;
    }
    if (name === "-j" || name === "--jump" || name === "-g" || name === "--goto") {
      if (pendingNegation) return `cannot negate ${name}`;
      const t = tokens[i];
      if (t === undefined || isOptionToken(t)) return `${name} needs a target`;
      if (target !== null) return "more than one target";
      i++;
      target = {
        kind: name === "-g" || name === "--goto" ? "goto" : "jump",
        name: t.text,
        options: [],
      };
      current = target;
      currentIsTarget = true;
      continue;
    }
    if (name === "-c" || name === "--set-counters") {
      const p = tokens[i];
      const b = tokens[i + 1];
      if (p === undefined || b === undefined || !/^\d+$/.test(p.text) || !/^\d+$/.test(b.text)) {
        return `${name} needs two numbers`;
      }
      counters = { packets: Number(p.text), bytes: Number(b.text) };
      i += 2;
      continue;
    }

    // Collect values: everything up to the next option or `!`. Greedy on purpose: an unquoted
    // comment with spaces (kube-proxy's fake writes them) stays one option with several words.
    const option: RuleOption = { name, values: [], negated: pendingNegation };
    pendingNegation = false;
    const flag = BUILTIN_FLAGS.has(name) || FLAGS.has(name);
    if (!flag) {
      if (tokens[i]?.text === "!" && !tokens[i]?.quoted) {
        // The old form `-s ! 10.0.0.1`.
        if (option.negated) return "double negation";
        option.negated = true;
        i++;
      }
      while (i < tokens.length) {
        const v = tokens[i] as Token;
        if (isOptionToken(v) || (v.text === "!" && !v.quoted)) break;
        option.values.push(v.text);
        i++;
      }
    }

    if (BUILTIN_OPTIONS.has(name)) {
      if (!flag && option.values.length === 0) return `${name} needs a value`;
      if (option.values.length > 1) {
        unknown.push(`extra arguments to ${name}: ${option.values.slice(1).join(" ")}`);
      }
      if (name === "-p" || name === "--protocol") {
        const p = (option.values[0] ?? "").toLowerCase();
        protocol = option.negated ? null : (PROTOCOL_NAMES[p] ?? p);
      }
      builtinMatch().options.push(option);
      continue;
    }

    if (current === null || (!currentIsTarget && protocolOwns(protocol, name, current))) {
      // An option with no module open: the protocol's implicit match if it is one of its
      // options, else kept in an "unknown module" bucket so it is never lost.
      const owner = protocol !== null && PROTOCOL_OPTIONS[protocol]?.has(name) ? protocol : null;
      if (owner !== null) {
        let implicit = matches.find((m) => m.implicit === true && m.module === owner);
        if (implicit === undefined) {
          implicit = { module: owner, options: [], implicit: true };
          matches.push(implicit);
        }
        implicit.options.push(option);
      } else {
        unknown.push(`option ${name} outside any module`);
        builtinMatch().options.push(option);
      }
      continue;
    }

    if (currentIsTarget) {
      const t = current as RuleTarget;
      const known = KNOWN_TARGET_OPTIONS[t.name];
      if (known !== undefined && !known.has(name)) unknown.push(`target ${t.name} option ${name}`);
      else if (known === undefined) unknown.push(`target ${t.name} option ${name}`);
      t.options.push(option);
    } else {
      const m = current as RuleMatch;
      const known = KNOWN_MATCH_OPTIONS[m.module];
      if (known !== undefined && !known.has(name)) unknown.push(`match ${m.module} option ${name}`);
      m.options.push(option);
    }
  }
  if (pendingNegation) return "`!` at the end of the rule";
  return { matches, target, unknown, counters };
}

/** True when the open module does not know `name` but the rule's protocol match does. */
function protocolOwns(protocol: string | null, name: string, current: RuleMatch | RuleTarget) {
  if (protocol === null) return false;
  const m = current as RuleMatch;
  const known = KNOWN_MATCH_OPTIONS[m.module];
  if (known === undefined || known.has(name)) return false;
  return PROTOCOL_OPTIONS[protocol]?.has(name) === true;
}
