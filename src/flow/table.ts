import {
  DIR_IN,
  DIR_OUT,
  DIR_UNKNOWN,
  FRAG_LATER,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  type Packet,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  TUNNEL_GENEVE,
  TUNNEL_NONE,
  TUNNEL_VXLAN,
} from "../decode/packet.js";
import { formatIPv4, formatIPv6 } from "../util/ip.js";
import { communityId, icmpCounterpart, setIPv4Bytes } from "./community-id.js";
import {
  HIST_A,
  HIST_D,
  HIST_F,
  HIST_H,
  HIST_R,
  HIST_S,
  HISTORY_LETTERS,
  TCP_CLOSED,
  TCP_ESTABLISHED,
  TCP_INACTIVE,
  TCP_PARTIAL,
  TCP_RESET,
  TCP_SYN_ACK_SENT,
  TCP_SYN_SENT,
  tcpConnState,
  UDP_ACTIVE,
  udpConnState,
} from "./conn-state.js";
import { fingerprint, fp2 } from "./fingerprint.js";
import type { LegRecord, TranslationRecord, Tuple } from "./types.js";

/**
 * The flow table: one leg per (interface, protocol, address:port pair), both directions, keyed
 * by a numeric symmetric hash with collision chains (no string keys on the hot path), plus the
 * translation detector that matches ingress and egress copies of the same packet.
 *
 * Memory is bounded by live legs: legs sit in LRU lists by timeout class and are closed (emitted
 * and dropped) as capture time passes their idle timeout.
 */

export interface FlowSink {
  leg(rec: LegRecord): void;
  translation(rec: TranslationRecord): void;
}

export interface FlowTableOptions {
  /** Seconds without a packet before a UDP (or other non-TCP) leg ends. Default 120. */
  udpIdleTimeout?: number;
  /** Seconds without a packet before an open TCP leg ends. Default 300 (Zeek's). */
  tcpIdleTimeout?: number;
  /** Seconds a closed (FIN both ways, or RST) TCP leg is kept for stragglers. Default 5. */
  closedLinger?: number;
  /** Seconds an ingress packet waits for its egress copy. Default 1. */
  translationWindow?: number;
}

// Scratch address bytes and option objects for Community IDs: no allocation per leg.
const V4_A = new Uint8Array(4);
const V4_B = new Uint8Array(4);
const NO_PORTS = { ports: false };
const ONE_WAY = { oneWay: true };
const TWO_WAY = {};

/** History code of Zeek's "^" (direction flipped). */
const HIST_FLIP = 14;
/** Codes 0-5 originator letters, 8-13 responder letters, 14 the flip mark (digit = code + 1). */
const HISTORY_CHARS = `${HISTORY_LETTERS}..${HISTORY_LETTERS.toLowerCase()}^`;

/** Probe positions per fingerprint in the translation window. */
const PROBES = 8;

const LIST_OPEN_TCP = 0;
const LIST_OTHER = 1;
const LIST_CLOSED = 2;

/**
 * A translation seen on a live leg. Pooled, and holds the two tuples as numbers (strings are
 * made when the leg closes): legs linger for seconds after closing, and per-leg garbage that
 * lives that long is what the collector spends its time copying.
 */
class Translation {
  /** The post-translation leg, as of `postSerial` (the object is reused once that leg ends). */
  post: Leg | null = null;
  postSerial = 0;
  interfaceIn = 0;
  interfaceOut = 0;
  preProto = 0;
  preVer = 0;
  postProto = 0;
  postVer = 0;
  preSrc4 = 0;
  preDst4 = 0;
  preSport = 0;
  preDport = 0;
  postSrc4 = 0;
  postDst4 = 0;
  postSport = 0;
  postDport = 0;
  preSrc6: Uint8Array | null = null;
  preDst6: Uint8Array | null = null;
  postSrc6: Uint8Array | null = null;
  postDst6: Uint8Array | null = null;
  packets = 0;
  firstTs = 0;
  lastTs = 0;
}

/**
 * One leg's state. Pooled: a closed leg's object is reused for a later one, so the objects live
 * long (in the old generation) instead of being garbage after their linger. Whoever keeps a
 * reference past the leg's end (translation window, translations) also keeps `serial`.
 */
export class Leg {
  hash = 0;
  ifId = 0;
  proto = 0;
  ver = 0;
  hasPorts = false;
  serial = 0;
  bucketNext: Leg | null = null;
  lruPrev: Leg | null = null;
  lruNext: Leg | null = null;
  list = -1;
  touchedTs = 0;
  closed = false;
  o4 = 0;
  r4 = 0;
  o6: Uint8Array | null = null;
  r6: Uint8Array | null = null;
  oPort = 0;
  rPort = 0;
  firstTs = 0;
  lastTs = 0;
  oPkts = 0;
  oBytes = 0;
  rPkts = 0;
  rBytes = 0;
  oState = 0;
  rState = 0;
  histMask = 0;
  /** History letters as base-16 digits (index into HISTORY_CHARS), first letter most significant. */
  histSeq = 0;
  direction = DIR_UNKNOWN;
  fingerprint = 0;
  tunnel: LegRecord["tunnel"] = null;
  icmpErrors: Record<string, number> | null = null;
  /** Emptied (not dropped) when the leg closes. */
  readonly translations: Translation[] = [];
}

function mixHash(h: number, v: number): number {
  h = Math.imul(h ^ v, 0x9e3779b1);
  return h ^ (h >>> 16);
}

function endpointHash4(addr: number, port: number): number {
  return mixHash(mixHash(0x2545f491, addr | 0), port);
}

function endpointHash6(d: Uint8Array, off: number, port: number): number {
  let h = 0x2545f491;
  for (let i = 0; i < 16; i += 4) {
    h = mixHash(
      h,
      (d[off + i]! << 24) | (d[off + i + 1]! << 16) | (d[off + i + 2]! << 8) | d[off + i + 3]!,
    );
  }
  return mixHash(h, port);
}

function eq6(a: Uint8Array, d: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== d[off + i]) return false;
  return true;
}

function bytesEq(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class FlowTable {
  // Chained hash table: bucket heads in a plain array (a Map rehashes and reallocates its whole
  // table as legs come and go; unlinking from a chain costs nothing).
  private buckets: (Leg | null)[] = filledArray(1 << 12);
  private bucketMask = (1 << 12) - 1;
  private readonly heads: (Leg | null)[] = [null, null, null];
  private readonly tails: (Leg | null)[] = [null, null, null];
  private readonly timeouts: number[];
  private nextSweep = 0;
  private live = 0;
  /** Legs emitted so far. */
  legsEmitted = 0;
  translationsEmitted = 0;
  private readonly legPool: Leg[] = [];
  private readonly translationPool: Translation[] = [];
  private serials = 0;
  /** Capture time of the packet being added. */
  private readonly now = new Float64Array(1);

  // The tuple being looked up (packet or ICMP-quoted), set by the caller of find().
  private kData: Uint8Array = new Uint8Array(0);
  private kVer = 0;
  private kSrc4 = 0;
  private kDst4 = 0;
  private kSrc6 = -1;
  private kDst6 = -1;
  private kSport = 0;
  private kDport = 0;
  private kProto = 0;
  private kHasPorts = false;
  private fromOrig = false;

  // Translation window: an open-addressing table of recent ingress (or undirected) packets keyed
  // by fingerprint, in typed arrays (no Map churn per packet). Entries are never deleted: they
  // expire by time and are overwritten, so memory is fixed.
  // Ingress and egress copies are microseconds apart: 32 k recent packets is plenty.
  private readonly fpSize = 1 << 15;
  private readonly fpMask = this.fpSize - 1;
  private readonly ringFp = new Int32Array(this.fpSize).fill(-1);
  private readonly ringFp2 = new Int32Array(this.fpSize);
  private readonly ringTs = new Float64Array(this.fpSize);
  // Filled by push: `new Array(n)` of this size would start in slow dictionary mode.
  private readonly ringLeg: (Leg | null)[] = filledArray(this.fpSize);
  private readonly ringSerial = new Float64Array(this.fpSize);
  private readonly ringFromOrig = new Uint8Array(this.fpSize);
  private readonly ringDir = new Uint8Array(this.fpSize);
  private readonly window: number;

  constructor(
    private readonly sink: FlowSink,
    options: FlowTableOptions = {},
  ) {
    this.timeouts = [
      options.tcpIdleTimeout ?? 300,
      options.udpIdleTimeout ?? 120,
      options.closedLinger ?? 5,
    ];
    this.window = options.translationWindow ?? 1;
  }

  get liveLegs(): number {
    return this.live;
  }

  /** Account one decoded packet at capture time `ts` (epoch seconds) on interface `ifId`. */
  add(p: Packet, ts: number, ifId: number): void {
    // The time travels in a typed array: a double passed to a function that is not inlined is
    // a heap number per call, i.e. per packet.
    this.now[0] = ts;
    this.addNow(p, ifId);
  }

  private addNow(p: Packet, ifId: number): void {
    const ts = this.now[0]!;
    if (ts >= this.nextSweep) {
      this.sweep(ts);
      this.nextSweep = ts + 1;
    }
    if (p.ipVersion === 0 || p.fragment === FRAG_LATER || p.proto < 0) return;
    const proto = p.proto;
    if (p.quoted) {
      this.attachIcmpError(p, ifId);
      return;
    }
    let sport = 0;
    let dport = 0;
    let hasPorts = true;
    if (p.hasPorts) {
      sport = p.srcPort;
      dport = p.dstPort;
    } else if (proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_SCTP) {
      return; // transport header cut: already an anomaly, no tuple to file it under
    } else if ((proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6) && p.icmpType >= 0) {
      const cp = icmpCounterpart(proto, p.icmpType);
      sport = p.icmpType;
      dport = cp >= 0 ? cp : p.icmpCode;
    } else {
      hasPorts = false;
    }
    this.kData = p.data;
    this.kVer = p.ipVersion;
    this.kSrc4 = p.src4;
    this.kDst4 = p.dst4;
    this.kSrc6 = p.src6;
    this.kDst6 = p.dst6;
    this.kSport = sport;
    this.kDport = dport;
    this.kProto = proto;
    this.kHasPorts = hasPorts;
    const h = this.hashKey(ifId);
    let leg = this.find(h, ifId);
    const isTcp = proto === IPPROTO_TCP;
    const flags = p.tcpFlags;
    if (leg !== null) {
      const idle = ts - leg.lastTs > this.timeouts[leg.list]!;
      const reuse =
        isTcp &&
        (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN &&
        (leg.oState >= TCP_CLOSED || leg.rState >= TCP_CLOSED);
      if (idle || reuse) {
        this.close(leg);
        leg = null;
      }
    }
    let fromOrig = this.fromOrig;
    if (leg === null) {
      leg = this.create(h, ifId, p);
      fromOrig = true;
      // A SYN-ACK first: its receiver opened the connection (Zeek flips and notes "^").
      if (isTcp && (flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK)) {
        this.flip(leg);
        fromOrig = false;
        leg.histSeq = HIST_FLIP + 1;
      } else {
        leg.direction = p.direction;
      }
    }
    // Multi-interface writers do not keep the file in time order: keep the true bounds.
    if (ts > leg.lastTs) leg.lastTs = ts;
    else if (ts < leg.firstTs) leg.firstTs = ts;
    const bytes = p.wirePayloadLen;
    if (fromOrig) {
      if (leg.oPkts === 0) {
        leg.fingerprint = fingerprint(p);
        leg.direction = p.direction;
      }
      leg.oPkts++;
      leg.oBytes += bytes;
    } else {
      leg.rPkts++;
      leg.rBytes += bytes;
    }
    if (isTcp) this.tcpUpdate(leg, fromOrig, flags, bytes);
    else {
      if (fromOrig) leg.oState = UDP_ACTIVE;
      else leg.rState = UDP_ACTIVE;
      if (bytes > 0) this.hist(leg, fromOrig, HIST_D);
    }
    // Requeue lazily (a state change, or once a second of capture time): the lists stay ordered
    // by last activity to within a second, which is all the idle sweep needs.
    const list = this.listOf(leg);
    if (list !== leg.list || ts - leg.touchedTs > 1) {
      this.touch(leg, list);
      leg.touchedTs = ts;
    }
    this.detectTranslation(p, leg, fromOrig, ifId);
  }

  /** Close every live leg (end of capture). */
  flush(): void {
    for (let list = 0; list < 3; list++) {
      while (this.heads[list] !== null) this.close(this.heads[list]!);
    }
    this.ringLeg.fill(null);
    this.ringFp.fill(-1);
  }

  private sweep(now: number): void {
    for (let list = 0; list < 3; list++) {
      const limit = now - this.timeouts[list]!;
      let leg = this.heads[list] ?? null;
      while (leg !== null && leg.lastTs < limit) {
        const next = leg.lruNext;
        this.close(leg);
        leg = next;
      }
    }
  }

  private hashKey(ifId: number): number {
    let a: number;
    let b: number;
    if (this.kVer === 4) {
      a = endpointHash4(this.kSrc4, this.kSport);
      b = endpointHash4(this.kDst4, this.kDport);
    } else {
      a = endpointHash6(this.kData, this.kSrc6, this.kSport);
      b = endpointHash6(this.kData, this.kDst6, this.kDport);
    }
    // Adding the two endpoint hashes makes the key the same in both directions.
    return (mixHash(ifId * 257 + this.kProto, (a + b) | 0) & 0x3fffffff) >>> 0;
  }

  private find(h: number, ifId: number): Leg | null {
    let leg = this.buckets[h & this.bucketMask] ?? null;
    const v4 = this.kVer === 4;
    while (leg !== null) {
      if (
        leg.hash === h &&
        leg.ifId === ifId &&
        leg.proto === this.kProto &&
        leg.ver === this.kVer
      ) {
        if (v4) {
          if (
            leg.o4 === this.kSrc4 &&
            leg.oPort === this.kSport &&
            leg.r4 === this.kDst4 &&
            leg.rPort === this.kDport
          ) {
            this.fromOrig = true;
            return leg;
          }
          if (
            leg.o4 === this.kDst4 &&
            leg.oPort === this.kDport &&
            leg.r4 === this.kSrc4 &&
            leg.rPort === this.kSport
          ) {
            this.fromOrig = false;
            return leg;
          }
        } else {
          const d = this.kData;
          if (
            leg.oPort === this.kSport &&
            leg.rPort === this.kDport &&
            eq6(leg.o6!, d, this.kSrc6) &&
            eq6(leg.r6!, d, this.kDst6)
          ) {
            this.fromOrig = true;
            return leg;
          }
          if (
            leg.oPort === this.kDport &&
            leg.rPort === this.kSport &&
            eq6(leg.o6!, d, this.kDst6) &&
            eq6(leg.r6!, d, this.kSrc6)
          ) {
            this.fromOrig = false;
            return leg;
          }
        }
      }
      leg = leg.bucketNext;
    }
    return null;
  }

  private create(h: number, ifId: number, p: Packet): Leg {
    const ts = this.now[0]!;
    const leg = this.legPool.pop() ?? new Leg();
    leg.serial = ++this.serials;
    leg.hash = h;
    leg.ifId = ifId;
    leg.proto = this.kProto;
    leg.ver = this.kVer;
    leg.hasPorts = this.kHasPorts;
    leg.bucketNext = null;
    leg.lruPrev = null;
    leg.lruNext = null;
    leg.list = -1;
    leg.touchedTs = 0;
    leg.closed = false;
    if (this.kVer === 4) {
      leg.o4 = this.kSrc4;
      leg.r4 = this.kDst4;
      leg.o6 = null;
      leg.r6 = null;
    } else {
      leg.o4 = 0;
      leg.r4 = 0;
      leg.o6 = copy16(leg.o6, this.kData, this.kSrc6);
      leg.r6 = copy16(leg.r6, this.kData, this.kDst6);
    }
    leg.oPort = this.kSport;
    leg.rPort = this.kDport;
    leg.firstTs = ts;
    leg.lastTs = ts;
    leg.oPkts = 0;
    leg.oBytes = 0;
    leg.rPkts = 0;
    leg.rBytes = 0;
    leg.oState = 0;
    leg.rState = 0;
    leg.histMask = 0;
    leg.histSeq = 0;
    leg.direction = DIR_UNKNOWN;
    leg.fingerprint = 0;
    leg.tunnel = null;
    leg.icmpErrors = null;
    if (p.tunnel !== TUNNEL_NONE) {
      const d = p.data;
      leg.tunnel = {
        kind: p.tunnel === TUNNEL_VXLAN ? "vxlan" : p.tunnel === TUNNEL_GENEVE ? "geneve" : "ipip",
        outerSrc: p.outerVersion === 4 ? formatIPv4(p.outerSrc4) : formatIPv6(d, p.outerSrc6),
        outerDst: p.outerVersion === 4 ? formatIPv4(p.outerDst4) : formatIPv6(d, p.outerDst6),
        vni: p.vni >= 0 ? p.vni : null,
      };
    }
    if (this.live >= this.buckets.length) this.grow();
    const b = h & this.bucketMask;
    leg.bucketNext = this.buckets[b] ?? null;
    this.buckets[b] = leg;
    this.live++;
    return leg;
  }

  /** Double the bucket array when legs outnumber buckets (never shrinks: bounded by the peak). */
  private grow(): void {
    const old = this.buckets;
    const size = old.length * 2;
    const buckets = filledArray(size);
    const mask = size - 1;
    for (let i = 0; i < old.length; i++) {
      let leg = old[i] ?? null;
      while (leg !== null) {
        const next = leg.bucketNext;
        const b = leg.hash & mask;
        leg.bucketNext = buckets[b] ?? null;
        buckets[b] = leg;
        leg = next;
      }
    }
    this.buckets = buckets;
    this.bucketMask = mask;
  }

  private flip(leg: Leg): void {
    const o4 = leg.o4;
    leg.o4 = leg.r4;
    leg.r4 = o4;
    const o6 = leg.o6;
    leg.o6 = leg.r6;
    leg.r6 = o6;
    const op = leg.oPort;
    leg.oPort = leg.rPort;
    leg.rPort = op;
  }

  private hist(leg: Leg, fromOrig: boolean, letter: number): void {
    const code = fromOrig ? letter : letter + 8;
    const bit = 1 << code;
    if ((leg.histMask & bit) !== 0) return;
    leg.histMask |= bit;
    // At most 13 letters (12 + "^"), so 16^13 stays an exact integer.
    leg.histSeq = leg.histSeq * 16 + code + 1;
  }

  /** Zeek's endpoint state machine (TCPSessionAdapter::UpdateStateMachine), then history. */
  private tcpUpdate(leg: Leg, fromOrig: boolean, flags: number, bytes: number): void {
    let me = fromOrig ? leg.oState : leg.rState;
    let peer = fromOrig ? leg.rState : leg.oState;
    const syn = (flags & TCP_SYN) !== 0;
    const ack = (flags & TCP_ACK) !== 0;
    const fin = (flags & TCP_FIN) !== 0;
    const rst = (flags & TCP_RST) !== 0;
    switch (me) {
      case TCP_INACTIVE:
        if (syn) {
          if (fromOrig) me = ack ? TCP_SYN_ACK_SENT : TCP_SYN_SENT;
          else {
            // The responder's SYN(-ACK) establishes both sides.
            if (peer === TCP_SYN_SENT || (!ack && peer === TCP_SYN_ACK_SENT)) {
              peer = TCP_ESTABLISHED;
            }
            me = TCP_ESTABLISHED;
          }
        }
        if (fin) me = TCP_CLOSED;
        if (rst) me = TCP_RESET;
        if (me === TCP_INACTIVE) {
          if (!fromOrig && bytes === 0 && peer === TCP_SYN_SENT) {
            // An ACK of the SYN before the SYN-ACK: not yet a partial connection.
          } else if (ack && peer === TCP_ESTABLISHED) {
            me = TCP_ESTABLISHED; // the SYN was missed
          } else {
            me = TCP_PARTIAL;
          }
        }
        break;
      case TCP_SYN_SENT:
      case TCP_SYN_ACK_SENT:
        if (fin) me = TCP_CLOSED;
        if (rst) me = TCP_RESET;
        break;
      case TCP_ESTABLISHED:
      case TCP_PARTIAL:
        if (fin && !rst) me = TCP_CLOSED;
        if (rst) me = TCP_RESET;
        break;
      case TCP_CLOSED:
        if (rst && peer !== TCP_CLOSED) me = TCP_RESET;
        break;
      default:
        break;
    }
    if (syn) this.hist(leg, fromOrig, ack ? HIST_H : HIST_S);
    if (fin) this.hist(leg, fromOrig, HIST_F);
    if (rst) this.hist(leg, fromOrig, HIST_R);
    if (bytes > 0) this.hist(leg, fromOrig, HIST_D);
    else if (ack && !syn && !fin && !rst) this.hist(leg, fromOrig, HIST_A);
    if (fromOrig) {
      leg.oState = me;
      leg.rState = peer;
    } else {
      leg.rState = me;
      leg.oState = peer;
    }
  }

  private listOf(leg: Leg): number {
    if (leg.proto !== IPPROTO_TCP) return LIST_OTHER;
    const o = leg.oState;
    const r = leg.rState;
    if (o === TCP_RESET || r === TCP_RESET || (o === TCP_CLOSED && r === TCP_CLOSED)) {
      return LIST_CLOSED;
    }
    return LIST_OPEN_TCP;
  }

  /** Move a leg to the tail of an LRU list (most recent). */
  private touch(leg: Leg, list: number): void {
    if (leg.list === list && this.tails[list] === leg) return;
    if (leg.list >= 0) this.unlink(leg);
    leg.list = list;
    leg.lruPrev = this.tails[list] ?? null;
    leg.lruNext = null;
    if (leg.lruPrev !== null) leg.lruPrev.lruNext = leg;
    else this.heads[list] = leg;
    this.tails[list] = leg;
  }

  private unlink(leg: Leg): void {
    const list = leg.list;
    if (leg.lruPrev !== null) leg.lruPrev.lruNext = leg.lruNext;
    else this.heads[list] = leg.lruNext;
    if (leg.lruNext !== null) leg.lruNext.lruPrev = leg.lruPrev;
    else this.tails[list] = leg.lruPrev;
    leg.lruPrev = null;
    leg.lruNext = null;
    leg.list = -1;
  }

  private close(leg: Leg): void {
    if (leg.closed) return;
    leg.closed = true;
    if (leg.list >= 0) this.unlink(leg);
    // Unchain from its hash bucket.
    const b = leg.hash & this.bucketMask;
    const head = this.buckets[b] ?? null;
    if (head === leg) {
      this.buckets[b] = leg.bucketNext;
    } else {
      let l = head;
      while (l !== null && l.bucketNext !== leg) l = l.bucketNext;
      if (l !== null) l.bucketNext = leg.bucketNext;
    }
    leg.bucketNext = null;
    this.live--;
    this.sink.leg(this.record(leg));
    this.legsEmitted++;
    const list = leg.translations;
    for (let i = 0; i < list.length; i++) {
      const t = list[i]!;
      const pre = tupleFrom(
        t.preProto,
        t.preVer === 4,
        t.preSrc4,
        t.preSrc6,
        t.preSport,
        t.preDst4,
        t.preDst6,
        t.preDport,
      );
      const post = tupleFrom(
        t.postProto,
        t.postVer === 4,
        t.postSrc4,
        t.postSrc6,
        t.postSport,
        t.postDst4,
        t.postDst6,
        t.postDport,
      );
      const srcChanged = pre.srcIp !== post.srcIp || pre.srcPort !== post.srcPort;
      const dstChanged = pre.dstIp !== post.dstIp || pre.dstPort !== post.dstPort;
      this.sink.translation({
        interfaceIn: t.interfaceIn,
        interfaceOut: t.interfaceOut,
        pre,
        post,
        kind: srcChanged && dstChanged ? "both" : srcChanged ? "snat" : "dnat",
        packets: t.packets,
        firstTs: t.firstTs,
        lastTs: t.lastTs,
      });
      this.translationsEmitted++;
      t.post = null;
      this.translationPool.push(t);
    }
    list.length = 0;
    this.legPool.push(leg);
  }

  private record(leg: Leg): LegRecord {
    const v4 = leg.ver === 4;
    const oBytes = v4 ? setIPv4Bytes(V4_A, leg.o4) : leg.o6!;
    const rBytes = v4 ? setIPv4Bytes(V4_B, leg.r4) : leg.r6!;
    const isIcmp = leg.proto === IPPROTO_ICMP || leg.proto === IPPROTO_ICMPV6;
    const connState =
      leg.proto === IPPROTO_TCP
        ? tcpConnState(leg.oState, leg.rState, leg.oBytes, leg.rBytes)
        : leg.proto === IPPROTO_UDP
          ? udpConnState(leg.oState, leg.rState)
          : "OTH";
    return {
      interfaceId: leg.ifId,
      proto: leg.proto,
      origIp: v4 ? ipv4Text(leg.o4) : formatIPv6(leg.o6!),
      origPort: leg.oPort,
      respIp: v4 ? ipv4Text(leg.r4) : formatIPv6(leg.r6!),
      respPort: leg.rPort,
      firstTs: leg.firstTs,
      lastTs: leg.lastTs,
      origPackets: leg.oPkts,
      origBytes: leg.oBytes,
      respPackets: leg.rPkts,
      respBytes: leg.rBytes,
      connState,
      history: historyText(leg.histSeq),
      communityId: communityId(
        leg.proto,
        oBytes,
        rBytes,
        leg.oPort,
        leg.rPort,
        !leg.hasPorts
          ? NO_PORTS
          : isIcmp && icmpCounterpart(leg.proto, leg.oPort) < 0
            ? ONE_WAY
            : TWO_WAY,
      ),
      direction: leg.direction === DIR_IN ? "in" : leg.direction === DIR_OUT ? "out" : "unknown",
      fingerprint: leg.fingerprint.toString(16).padStart(8, "0"),
      tunnel: leg.tunnel,
      icmpErrors: leg.icmpErrors ?? {},
    };
  }

  /** An ICMP error quoting a packet: count it on the leg of the quoted packet. */
  private attachIcmpError(p: Packet, ifId: number): void {
    this.kData = p.data;
    this.kVer = p.qVersion;
    this.kSrc4 = p.qSrc4;
    this.kDst4 = p.qDst4;
    this.kSrc6 = p.qSrc6;
    this.kDst6 = p.qDst6;
    this.kSport = p.qSrcPort;
    this.kDport = p.qDstPort;
    this.kProto = p.qProto;
    this.kHasPorts = true;
    const leg = this.find(this.hashKey(ifId), ifId);
    if (leg === null) return;
    const key = `${p.icmpType}/${p.icmpCode}`;
    const errors = (leg.icmpErrors ??= {});
    errors[key] = (errors[key] ?? 0) + 1;
  }

  private detectTranslation(p: Packet, leg: Leg, fromOrig: boolean, ifId: number): void {
    const ts = this.now[0]!;
    const dir = p.direction;
    const fp = fingerprint(p);
    const check = fp2;
    const mask = this.fpMask;
    if (dir !== DIR_IN) {
      for (let i = 0; i < PROBES; i++) {
        const slot = (fp + i) & mask;
        const at = this.ringFp[slot]!;
        if (at < 0) break;
        if (at !== fp || this.ringFp2[slot] !== check) continue;
        const inLeg = this.ringLeg[slot]!;
        // A pooled leg object may since carry another leg: then the remembered one has ended.
        if (inLeg.serial !== this.ringSerial[slot] || inLeg.closed || inLeg === leg) continue;
        const fresh = ts - this.ringTs[slot]! <= this.window;
        const usable = dir === DIR_OUT ? this.ringDir[slot] !== DIR_OUT : inLeg.ifId !== ifId;
        if (!fresh || !usable) continue;
        const inFromOrig = this.ringFromOrig[slot] === 1;
        if (sameTuple(inLeg, inFromOrig, leg, fromOrig)) continue;
        // Without packet types the earlier timestamp is the pre-NAT copy; multi-interface
        // writers (dumpcap) do not keep the file in time order across interfaces.
        if (dir === DIR_UNKNOWN && ts < this.ringTs[slot]!) {
          this.recordTranslation(leg, fromOrig, inLeg, inFromOrig);
        } else {
          this.recordTranslation(inLeg, inFromOrig, leg, fromOrig);
        }
        return;
      }
      if (dir === DIR_OUT) return;
    }
    // Remember this packet for its egress copy: the first free or expired probe position, else
    // the oldest of them.
    const limit = ts - this.window;
    let slot = fp & mask;
    let oldest = slot;
    for (let i = 0; i < PROBES; i++) {
      const s = (fp + i) & mask;
      if (this.ringFp[s]! < 0 || this.ringTs[s]! < limit) {
        slot = s;
        oldest = -1;
        break;
      }
      if (this.ringTs[s]! < this.ringTs[oldest]!) oldest = s;
    }
    if (oldest >= 0) slot = oldest;
    this.ringFp[slot] = fp;
    this.ringFp2[slot] = check;
    this.ringTs[slot] = ts;
    this.ringLeg[slot] = leg;
    this.ringSerial[slot] = leg.serial;
    this.ringFromOrig[slot] = fromOrig ? 1 : 0;
    this.ringDir[slot] = dir;
  }

  private recordTranslation(
    inLeg: Leg,
    inFromOrig: boolean,
    outLeg: Leg,
    outFromOrig: boolean,
  ): void {
    const ts = this.now[0]!;
    // Orient by the connection: a reply's translation is the request's, read backwards.
    const forward = inFromOrig;
    const preLeg = forward ? inLeg : outLeg;
    const postLeg = forward ? outLeg : inLeg;
    const list = preLeg.translations;
    for (let i = 0; i < list.length; i++) {
      const t = list[i]!;
      if (t.post === postLeg && t.postSerial === postLeg.serial) {
        t.packets++;
        t.lastTs = ts;
        return;
      }
    }
    const t = this.translationPool.pop() ?? new Translation();
    t.post = postLeg;
    t.postSerial = postLeg.serial;
    t.interfaceIn = forward ? inLeg.ifId : outLeg.ifId;
    t.interfaceOut = forward ? outLeg.ifId : inLeg.ifId;
    if (forward) {
      setSide(t, true, inLeg, inFromOrig);
      setSide(t, false, outLeg, outFromOrig);
    } else {
      setSide(t, true, outLeg, !outFromOrig);
      setSide(t, false, inLeg, !inFromOrig);
    }
    t.packets = 1;
    t.firstTs = ts;
    t.lastTs = ts;
    list.push(t);
  }
}

/** Copy one packet direction's addresses and ports of a leg into the pre or post side of `t`. */
function setSide(t: Translation, pre: boolean, leg: Leg, fromOrig: boolean): void {
  const src4 = fromOrig ? leg.o4 : leg.r4;
  const dst4 = fromOrig ? leg.r4 : leg.o4;
  const sport = fromOrig ? leg.oPort : leg.rPort;
  const dport = fromOrig ? leg.rPort : leg.oPort;
  const v6 = leg.ver !== 4;
  const src6 = fromOrig ? leg.o6 : leg.r6;
  const dst6 = fromOrig ? leg.r6 : leg.o6;
  if (pre) {
    t.preProto = leg.proto;
    t.preVer = leg.ver;
    t.preSrc4 = src4;
    t.preDst4 = dst4;
    t.preSport = sport;
    t.preDport = dport;
    if (v6) {
      t.preSrc6 = copy16(t.preSrc6, src6!, 0);
      t.preDst6 = copy16(t.preDst6, dst6!, 0);
    }
  } else {
    t.postProto = leg.proto;
    t.postVer = leg.ver;
    t.postSrc4 = src4;
    t.postDst4 = dst4;
    t.postSport = sport;
    t.postDport = dport;
    if (v6) {
      t.postSrc6 = copy16(t.postSrc6, src6!, 0);
      t.postDst6 = copy16(t.postDst6, dst6!, 0);
    }
  }
}

function tupleFrom(
  proto: number,
  v4: boolean,
  src4: number,
  src6: Uint8Array | null,
  sport: number,
  dst4: number,
  dst6: Uint8Array | null,
  dport: number,
): Tuple {
  return {
    proto,
    srcIp: v4 ? ipv4Text(src4) : formatIPv6(src6!),
    srcPort: sport,
    dstIp: v4 ? ipv4Text(dst4) : formatIPv6(dst6!),
    dstPort: dport,
  };
}

/** 16 address bytes at `off` into `into` (allocated once, then reused). */
function copy16(into: Uint8Array | null, from: Uint8Array, off: number): Uint8Array {
  const out = into ?? new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = from[off + i]!;
  return out;
}

/** Same addresses and ports in the packets' directions (interfaces aside)? */
function sameTuple(a: Leg, aFromOrig: boolean, b: Leg, bFromOrig: boolean): boolean {
  if (a.proto !== b.proto || a.ver !== b.ver) return false;
  const aSrcPort = aFromOrig ? a.oPort : a.rPort;
  const aDstPort = aFromOrig ? a.rPort : a.oPort;
  const bSrcPort = bFromOrig ? b.oPort : b.rPort;
  const bDstPort = bFromOrig ? b.rPort : b.oPort;
  if (aSrcPort !== bSrcPort || aDstPort !== bDstPort) return false;
  if (a.ver === 4) {
    return (
      (aFromOrig ? a.o4 : a.r4) === (bFromOrig ? b.o4 : b.r4) &&
      (aFromOrig ? a.r4 : a.o4) === (bFromOrig ? b.r4 : b.o4)
    );
  }
  return (
    bytesEq(aFromOrig ? a.o6 : a.r6, bFromOrig ? b.o6 : b.r6) &&
    bytesEq(aFromOrig ? a.r6 : a.o6, bFromOrig ? b.r6 : b.o6)
  );
}

function filledArray(n: number): (Leg | null)[] {
  const a: (Leg | null)[] = [];
  for (let i = 0; i < n; i++) a.push(null);
  return a;
}

// The same few addresses (Service VIPs, pods, busy clients) and histories recur on leg after
// leg: their strings are made once and shared (strings are immutable) instead of per leg.
const IP4_CACHE_BITS = 12;
const ip4Keys = new Float64Array(1 << IP4_CACHE_BITS).fill(-1);
const ip4Texts: string[] = new Array<string>(1 << IP4_CACHE_BITS).fill("");

/** formatIPv4 through a direct-mapped cache. */
function ipv4Text(v: number): string {
  const slot = Math.imul(v, 0x9e3779b1) >>> (32 - IP4_CACHE_BITS);
  if (ip4Keys[slot] === v) return ip4Texts[slot]!;
  const text = formatIPv4(v);
  ip4Keys[slot] = v;
  ip4Texts[slot] = text;
  return text;
}

const historyCache = new Map<number, string>();

function historyText(seq: number): string {
  const cached = historyCache.get(seq);
  if (cached !== undefined) return cached;
  const text = historyTextOf(seq);
  if (historyCache.size < 4096) historyCache.set(seq, text);
  return text;
}

function historyTextOf(seq: number): string {
  let out = "";
  while (seq > 0) {
    const digit = seq % 16;
    out = HISTORY_CHARS[digit - 1]! + out;
    seq = (seq - digit) / 16;
  }
  return out;
}
