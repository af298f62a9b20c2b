import type { RuleSetTimeline, ServiceIndex } from "./index-services.js";
import { Judge } from "./judge.js";
import { sameTuple, TupleMap } from "./tuple-map.js";
import type {
  Connection,
  ConntrackView,
  LegView,
  Simulator,
  TranslationView,
  TupleView,
} from "./types.js";

export interface ReconstructInput {
  /** Legs and translations ordered by firstTs, a translation before a leg on a tie (`mergeByTime`). */
  events: Iterable<LegView | TranslationView>;
  conntrack: readonly ConntrackView[];
  services: ServiceIndex;
  rulesets: RuleSetTimeline;
  simulator: Simulator | null;
  /**
   * Clock-skew tolerance in seconds: sightings of one connection at different points (nodes,
   * pods, clients) start within this of each other.
   */
  skew?: number;
  /** Called every `progressEvery` legs and translations read (default 65,536), with the counts. */
  progress?: (stats: Readonly<ReconstructStats>) => void;
  progressEvery?: number;
}

export interface ReconstructStats {
  legs: number;
  legsUsed: number;
  translations: number;
  connections: number;
  simulations: number;
  simulationCacheHits: number;
  unmodelled: string[];
}

/** A connection being assembled: the legs and translations that belong to it so far. */
export interface WorkConnection {
  id: number;
  proto: number;
  /** Client → VIP (before DNAT). */
  pre: TupleView;
  /** After NAT, in the originator's direction; the first is the one the kernel chose at start. */
  posts: TupleView[];
  vipFrom: Connection["vipFrom"];
  /** Node that translated it, when a translation or conntrack record says so. */
  node: string | null;
  start: number;
  /** When the translating node (or the first observer) saw it start: its own clock. */
  anchor: number;
  lastTs: number;
  preLegs: LegView[];
  postLegs: LegView[];
  translationIds: number[];
  conntrackIds: number[];
  /** Tuples it is open under; the first is the pre-NAT tuple. */
  keys: TupleView[];
}

interface Buffered {
  leg: LegView;
  /** The leg's tuple (originator → responder). */
  key: TupleView;
  claimed: boolean;
}

/**
 * Is a second translation of the same pre-NAT tuple on the same node the same conversation (its
 * translation changed midway) rather than a new one reusing the client port? It is when a pre-NAT
 * leg of the connection on that node was still active then; without such a leg (the capture
 * lost it), when the earlier translations were.
 */
function sameConversation(w: WorkConnection, tr: TranslationView): boolean {
  const slack = 0.001;
  let legs = 0;
  for (const l of w.preLegs) {
    if (l.node !== tr.node) continue;
    legs++;
    if (l.firstTs - slack <= tr.firstTs && tr.firstTs <= l.lastTs + slack) return true;
  }
  return legs === 0 && tr.firstTs <= w.lastTs + slack;
}

/** Seconds between sightings of one connection's start on the same node. */
const SAME_NODE_SLACK = 0.5;

/** Legs and translations, each ordered by firstTs, merged as `reconstruct` reads them. */
export function* mergeByTime(
  legs: Iterable<LegView>,
  translations: Iterable<TranslationView>,
): Generator<LegView | TranslationView> {
  const legIt = legs[Symbol.iterator]();
  const trIt = translations[Symbol.iterator]();
  let leg = legIt.next();
  let tr = trIt.next();
  while (!leg.done || !tr.done) {
    if (tr.done || (!leg.done && leg.value.firstTs < tr.value.firstTs)) {
      yield leg.value as LegView;
      leg = legIt.next();
    } else {
      yield tr.value;
      tr = trIt.next();
    }
  }
}

/** Legs of no connection yet: shared, never pushed to (`appended` makes a list of its own). */
const NONE = Object.freeze([]) as unknown as LegView[];
const NO_CONNTRACK: ConntrackView[] = [];

/**
 * `list` with `item` added: a list of one made exactly (an empty array's first push reserves
 * room for 17), pushed to after that. Connections are made a million at a time.
 */
function appended<T>(list: T[], item: T): T[] {
  if (list.length === 0) return [item];
  list.push(item);
  return list;
}

/** Legs of one tuple (wherever seen). */
function sameLegTuple(a: LegView, b: LegView): boolean {
  return (
    a.origPort === b.origPort &&
    a.respPort === b.respPort &&
    a.proto === b.proto &&
    a.origIp === b.origIp &&
    a.respIp === b.respIp
  );
}

/** Two sightings at the same observation point (node, interface, direction) of one tuple. */
function sameObservation(a: LegView, b: LegView): boolean {
  return (
    a.node === b.node && a.iface === b.iface && a.direction === b.direction && sameLegTuple(a, b)
  );
}

function legTuple(l: LegView): TupleView {
  return {
    proto: l.proto,
    srcIp: l.origIp,
    srcPort: l.origPort,
    dstIp: l.respIp,
    dstPort: l.respPort,
  };
}

/**
 * Streams legs and translations in time order and groups them into connections.
 *
 * Every leg belongs to at most one connection: a translation claims the legs with its pre- and
 * post-NAT tuples (on any node: remote nodes and pods see the post-NAT tuple) that start within
 * the skew tolerance; a leg nobody claimed within the tolerance starts a connection of its own
 * when it goes to a VIP (no translation seen) or when conntrack knows its VIP (DNAT in OUTPUT,
 * invisible on the wire). Memory is bounded by the connections alive within the tolerance.
 */
export function reconstruct(
  input: ReconstructInput,
  emit: (connection: Connection) => void,
): ReconstructStats {
  const skew = input.skew ?? 2;
  const judge = new Judge(input.services, input.rulesets, input.simulator);
  const stats: ReconstructStats = {
    legs: 0,
    legsUsed: 0,
    translations: 0,
    connections: 0,
    simulations: 0,
    simulationCacheHits: 0,
    unmodelled: [],
  };

  // Conntrack: by original tuple (to confirm a pre-NAT leg's endpoint) and by the post-NAT
  // tuple (reply reversed) to find the VIP of traffic whose DNAT happened before capture.
  const ctByOrig = new TupleMap<ConntrackView[]>();
  const ctByPost = new TupleMap<ConntrackView[]>();
  const index = (map: TupleMap<ConntrackView[]>, key: TupleView, ct: ConntrackView) => {
    const list = map.get(key);
    if (list === undefined) map.set(key, [ct]);
    else list.push(ct);
  };
  /**
   * A dump shows what was alive when it was taken: the record for a connection that started at
   * t is in the first dump taken after t (an earlier dump holding the same tuple saw an earlier
   * conversation on a reused port).
   */
  const pick = (map: TupleMap<ConntrackView[]>, key: TupleView, t: number) => {
    let best: ConntrackView | undefined;
    for (const ct of map.get(key) ?? NO_CONNTRACK) {
      if (ct.takenAt < t) continue;
      if (best === undefined || ct.takenAt < best.takenAt) best = ct;
    }
    return best;
  };
  for (const ct of input.conntrack) {
    const post: TupleView = {
      proto: ct.proto,
      srcIp: ct.reply.dstIp,
      srcPort: ct.reply.dstPort,
      dstIp: ct.reply.srcIp,
      dstPort: ct.reply.srcPort,
    };
    const translated = post.dstIp !== ct.orig.dstIp || post.dstPort !== ct.orig.dstPort;
    if (!translated) continue;
    index(ctByOrig, ct.orig, ct);
    index(ctByPost, post, ct);
  }

  const buffer: Buffered[] = [];
  let head = 0;
  const bufByKey = new TupleMap<Buffered[]>();
  const open = new TupleMap<WorkConnection>();
  const active = new Set<WorkConnection>();
  let nextId = 1;
  let lastSweep = Number.NEGATIVE_INFINITY;
  let sweepSize = 1024;

  const register = (w: WorkConnection, key: TupleView) => {
    if (!w.keys.some((k) => sameTuple(k, key))) w.keys.push(key);
    open.set(key, w);
  };

  /**
   * Port reuse: a second leg with the same tuple at the same observation point (node,
   * interface, direction) is another conversation, however soon it follows.
   */
  const seenHere = (w: WorkConnection, leg: LegView): boolean => {
    const pre = w.preLegs;
    const post = w.postLegs;
    for (let i = 0; i < pre.length; i++) if (sameObservation(pre[i] as LegView, leg)) return true;
    for (let i = 0; i < post.length; i++) if (sameObservation(post[i] as LegView, leg)) return true;
    // On one node all sightings of a tuple's first packet are microseconds apart (no clock
    // skew there), and so are the translation and its post-NAT packets: a leg starting much
    // later on a node that already saw it is another conversation on a reused port. (The
    // pre-NAT side may start earlier: first packets can wait on the node, for neighbour
    // discovery, before anything leaves it translated.)
    let first = w.node === leg.node ? w.anchor : Number.POSITIVE_INFINITY;
    for (let i = 0; i < pre.length; i++) {
      const l = pre[i] as LegView;
      if (l.node === leg.node && l.firstTs < first && sameLegTuple(l, leg)) first = l.firstTs;
    }
    for (let i = 0; i < post.length; i++) {
      const l = post[i] as LegView;
      if (l.node === leg.node && l.firstTs < first && sameLegTuple(l, leg)) first = l.firstTs;
    }
    if (first === Number.POSITIVE_INFINITY) return false;
    if (leg.firstTs - first > SAME_NODE_SLACK) return true;
    // Started earlier: the same conversation if it was still going then (its first packets
    // waited), an earlier one if it was over.
    return leg.lastTs < first - SAME_NODE_SLACK;
  };

  const claim = (w: WorkConnection, key: TupleView, role: "pre" | "post", around: number) => {
    const list = bufByKey.get(key);
    if (list === undefined) return;
    for (const b of list) {
      if (b.claimed || Math.abs(b.leg.firstTs - around) > skew) continue;
      if (seenHere(w, b.leg)) continue;
      b.claimed = true;
      attach(w, b.leg, role);
    }
  };

  const attach = (w: WorkConnection, leg: LegView, role: "pre" | "post") => {
    if (role === "pre") w.preLegs = appended(w.preLegs, leg);
    else w.postLegs = appended(w.postLegs, leg);
    if (leg.lastTs > w.lastTs) w.lastTs = leg.lastTs;
    if (leg.firstTs < w.start) w.start = leg.firstTs;
    stats.legsUsed++;
  };

  const openWork = (
    pre: TupleView,
    post: TupleView | null,
    vipFrom: Connection["vipFrom"],
    node: string | null,
    t: number,
    translationId: number | null,
  ): WorkConnection => {
    const preKey = pre;
    const postKey = post;
    const w: WorkConnection = {
      id: nextId++,
      proto: pre.proto,
      pre,
      posts: post === null ? [] : [post],
      vipFrom,
      node,
      start: t,
      anchor: t,
      lastTs: t,
      preLegs: NONE,
      postLegs: NONE,
      translationIds: translationId === null ? [] : [translationId],
      conntrackIds: [],
      keys: postKey === null || sameTuple(postKey, preKey) ? [preKey] : [preKey, postKey],
    };
    open.set(preKey, w);
    claim(w, preKey, "pre", t);
    if (post !== null && postKey !== null) {
      open.set(postKey, w);
      claim(w, postKey, "post", t);
    }
    const ct = pick(ctByOrig, preKey, t);
    if (ct !== undefined) {
      w.conntrackIds = [ct.id];
      if (w.posts.length === 0) {
        // The capture missed the egress copy but the kernel recorded where it sent it.
        const ctPost: TupleView = {
          proto: ct.proto,
          srcIp: ct.reply.dstIp,
          srcPort: ct.reply.dstPort,
          dstIp: ct.reply.srcIp,
          dstPort: ct.reply.srcPort,
        };
        w.posts = [ctPost];
        if (w.node === null) w.node = ct.node;
        register(w, ctPost);
        claim(w, ctPost, "post", t);
      }
    }
    active.add(w);
    return w;
  };

  const finish = (w: WorkConnection) => {
    active.delete(w);
    for (const k of w.keys) if (open.get(k) === w) open.delete(k);
    emit(judge.judge(w));
    stats.connections++;
  };

  /** A leg nobody claimed within the tolerance: does it start a connection of its own? */
  const settle = (b: Buffered) => {
    const list = bufByKey.get(b.key);
    if (list !== undefined) {
      const i = list.indexOf(b);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) bufByKey.delete(b.key);
    }
    if (b.claimed) return;
    const leg = b.leg;
    if (input.services.vip(leg.proto, leg.respIp, leg.respPort) !== null) {
      b.claimed = true;
      const w = openWork(b.key, null, "capture", null, leg.firstTs, null);
      attach(w, leg, "pre");
      return;
    }
    const ct = pick(ctByPost, b.key, leg.firstTs);
    if (ct !== undefined) {
      b.claimed = true;
      const w = openWork(ct.orig, b.key, "conntrack", ct.node, leg.firstTs, null);
      if (!w.conntrackIds.includes(ct.id)) w.conntrackIds = appended(w.conntrackIds, ct.id);
      attach(w, leg, "post");
    }
  };

  const advance = (now: number) => {
    while (head < buffer.length) {
      const b = buffer[head];
      if (b === undefined || b.leg.firstTs >= now - skew) break;
      head++;
      settle(b);
    }
    if (head > 65536 && head * 2 > buffer.length) {
      buffer.splice(0, head);
      head = 0;
    }
    if (now - lastSweep >= 1 || active.size >= sweepSize) {
      lastSweep = now;
      for (const w of active) {
        if (w.start + 2 * skew < now && w.lastTs + skew < now) finish(w);
      }
      sweepSize = Math.max(1024, active.size * 2);
    }
  };

  const onLeg = (leg: LegView) => {
    stats.legs++;
    if (leg.proto !== 6 && leg.proto !== 17 && leg.proto !== 132) return;
    advance(leg.firstTs);
    const key = legTuple(leg);
    const w = open.get(key);
    const near =
      w !== undefined &&
      (Math.abs(leg.firstTs - w.start) <= skew || Math.abs(leg.firstTs - w.anchor) <= skew);
    if (w !== undefined && near && !seenHere(w, leg)) {
      attach(w, leg, sameTuple(key, w.pre) ? "pre" : "post");
      return;
    }
    const b: Buffered = { leg, key, claimed: false };
    buffer.push(b);
    const list = bufByKey.get(key);
    if (list === undefined) bufByKey.set(key, [b]);
    else list.push(b);
  };

  const onTranslation = (tr: TranslationView) => {
    stats.translations++;
    if (tr.pre.proto !== 6 && tr.pre.proto !== 17 && tr.pre.proto !== 132) return;
    advance(tr.firstTs);
    const existing = open.get(tr.pre);
    // A connection known so far only from its pre-NAT leg: its first packets waited on the
    // node (for neighbour discovery, say) and were translated later than the tolerance allows
    // for a first sighting. The translation seen while that leg was still going is its own.
    const untranslated =
      existing !== undefined && existing.node === null && existing.posts.length === 0;
    // The same connection translated again (the stream shows a second record when the
    // translation changed midway, or the detector split it): one connection, several posts.
    if (
      existing !== undefined &&
      (existing.node === tr.node || untranslated) &&
      sameConversation(existing, tr)
    ) {
      if (untranslated) {
        existing.node = tr.node;
        existing.vipFrom = "translation";
        existing.anchor = tr.firstTs;
      }
      existing.translationIds.push(tr.id);
      if (!existing.posts.some((p) => sameTuple(p, tr.post))) {
        existing.posts.push(tr.post);
        register(existing, tr.post);
        claim(existing, tr.post, "post", tr.firstTs);
      }
      if (tr.lastTs > existing.lastTs) existing.lastTs = tr.lastTs;
      return;
    }
    const w = openWork(tr.pre, tr.post, "translation", tr.node, tr.firstTs, tr.id);
    if (tr.lastTs > w.lastTs) w.lastTs = tr.lastTs;
  };

  const progressEvery = input.progressEvery ?? 65_536;
  let untilProgress = progressEvery;
  for (const event of input.events) {
    if (event.kind === "leg") onLeg(event);
    else onTranslation(event);
    if (--untilProgress === 0) {
      untilProgress = progressEvery;
      input.progress?.(stats);
    }
  }
  advance(Number.POSITIVE_INFINITY);
  for (const w of [...active]) finish(w);

  stats.simulations = judge.simulations;
  stats.simulationCacheHits = judge.cacheHits;
  stats.unmodelled = [...judge.unmodelled];
  return stats;
}
