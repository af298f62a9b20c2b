/**
 * The mutable state of one path through the hooks. A packet starts as one thread; every
 * probabilistic or unknown match forks it. Everything the inner loop touches is a number or a
 * pre-built object, so walking rules does no string work.
 */

import type { Hook, UnmodelledItem } from "./types.js";

// Connection-tracking state bits, as xt_conntrack numbers them (plus our virtual SNAT/DNAT).
export const CT_INVALID = 1;
export const CT_ESTABLISHED = 2;
export const CT_RELATED = 4;
export const CT_NEW = 8;
export const CT_UNTRACKED = 16;
export const CT_SNAT = 32;
export const CT_DNAT = 64;

export const CTS_EXPECTED = 1;
export const CTS_SEEN_REPLY = 2;
export const CTS_ASSURED = 4;
export const CTS_CONFIRMED = 8;

/** Stop a chain walk: who ended it. */
export const END_NONE = 0;
export const END_ACCEPT = 1;
export const END_DROP = 2;
export const END_REJECT = 3;
export const END_POLICY_ACCEPT = 4;
export const END_POLICY_DROP = 5;
export const END_NAT = 6;

export interface ChainLike {
  name: string;
  rules: RuleLike[];
}

/** The parts of a compiled rule the thread keeps for the path. */
export interface RuleLike {
  readonly stepIndex: number;
}

/** One step of a hook walk: a table's chain, or the routing decision between hooks. */
export interface Stage {
  table: string;
  chain: string;
  chainRef: ChainLike | null;
  kind: "chain" | "route" | "loop" | "upstream-route";
  /** A built-in chain (policy applies at its end) rather than a user chain walked directly. */
  builtin: boolean;
}

export interface Frame {
  chain: ChainLike;
  /** Candidate rule positions (from a dispatch index), or null to walk every rule. */
  cands: ArrayLike<number> | null;
  pos: number;
}

export class Thread {
  prob = 1;
  fam: 4 | 6 = 4;
  proto = 6;
  src4 = 0;
  dst4 = 0;
  src6: Uint8Array = EMPTY6;
  dst6: Uint8Array = EMPTY6;
  srcText = "";
  dstText = "";
  sport = 0;
  dport = 0;
  /** The destination before any DNAT, for --ctorigdst and for reports. */
  odst4 = 0;
  odst6: Uint8Array = EMPTY6;
  odport = 0;
  inIface: string | null = null;
  outIface: string | null = null;
  ct = CT_NEW;
  ctStatus = 0;
  mark = 0;
  ctMark = 0;
  tcpFlags = 2;
  icmpType = 8;
  icmpCode = 0;
  hook: Hook = "prerouting";
  upstream = false;

  /** DNAT result: the new address text and port; null when untranslated. */
  dnatIp: string | null = null;
  dnatPort = 0;
  dnatText: string | null = null;
  snat: string | null = null;
  masq = false;
  /** Upstream mode: KUBE-MARK-MASQ was jumped to. */
  markMasqJump = false;

  stages: readonly Stage[] = [];
  stage: Stage | null = null;
  stageIdx = 0;
  delivery: "local" | "forward" = "forward";
  frames: Frame[] = [];
  /** Path as compiled-rule step indices, in order. */
  path: number[] = [];
  assumed: string[] = [];
  unmodelled: UnmodelledItem[] = [];

  verdict: "DNAT" | "ACCEPT" | "DROP" | "REJECT" = "ACCEPT";
  decidedBy: "rule" | "policy" = "policy";
  filterVerdict: "ACCEPT" | "DROP" | "REJECT" = "ACCEPT";
  filterDecidedBy: "rule" | "policy" = "policy";
  rejectWith: string | null = null;
  done = false;
  /** Rules examined so far on this path (loop guard). */
  steps = 0;

  clone(): Thread {
    const t = new Thread();
    t.prob = this.prob;
    t.fam = this.fam;
    t.proto = this.proto;
    t.src4 = this.src4;
    t.dst4 = this.dst4;
    t.src6 = this.src6;
    t.dst6 = this.dst6;
    t.srcText = this.srcText;
    t.dstText = this.dstText;
    t.sport = this.sport;
    t.dport = this.dport;
    t.odst4 = this.odst4;
    t.odst6 = this.odst6;
    t.odport = this.odport;
    t.inIface = this.inIface;
    t.outIface = this.outIface;
    t.ct = this.ct;
    t.ctStatus = this.ctStatus;
    t.mark = this.mark;
    t.ctMark = this.ctMark;
    t.tcpFlags = this.tcpFlags;
    t.icmpType = this.icmpType;
    t.icmpCode = this.icmpCode;
    t.hook = this.hook;
    t.upstream = this.upstream;
    t.dnatIp = this.dnatIp;
    t.dnatPort = this.dnatPort;
    t.dnatText = this.dnatText;
    t.snat = this.snat;
    t.masq = this.masq;
    t.markMasqJump = this.markMasqJump;
    t.stages = this.stages;
    t.stageIdx = this.stageIdx;
    t.stage = this.stage;
    t.delivery = this.delivery;
    const frames: Frame[] = new Array(this.frames.length);
    for (let i = 0; i < frames.length; i++) {
      const f = this.frames[i]!;
      frames[i] = { chain: f.chain, cands: f.cands, pos: f.pos };
    }
    t.frames = frames;
    t.path = this.path.slice();
    t.assumed = this.assumed.slice();
    t.unmodelled = this.unmodelled.slice();
    t.verdict = this.verdict;
    t.decidedBy = this.decidedBy;
    t.filterVerdict = this.filterVerdict;
    t.filterDecidedBy = this.filterDecidedBy;
    t.rejectWith = this.rejectWith;
    t.done = this.done;
    t.steps = this.steps;
    return t;
  }
}

const EMPTY6 = new Uint8Array(16);
