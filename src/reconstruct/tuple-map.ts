import type { TupleView } from "./types.js";

/** Do two tuples name the same conversation direction? */
export function sameTuple(a: TupleView, b: TupleView): boolean {
  return (
    a.srcPort === b.srcPort &&
    a.dstPort === b.dstPort &&
    a.proto === b.proto &&
    a.srcIp === b.srcIp &&
    a.dstIp === b.dstIp
  );
}

/**
 * A small integer from a tuple: ports in full, and the last characters of the addresses (where
 * addresses of one subnet differ). Numbers, so no key text is built per lookup.
 */
function hash(t: TupleView): number {
  const s = t.srcIp;
  const d = t.dstIp;
  return (
    ((t.srcPort << 16) | t.dstPort) ^
    (s.charCodeAt(s.length - 1) << 4) ^
    (s.charCodeAt(s.length - 2) << 10) ^
    (d.charCodeAt(d.length - 1) << 20) ^
    (d.charCodeAt(d.length - 2) << 26) ^
    t.proto
  );
}

interface Slot<V> {
  tuple: TupleView;
  value: V;
}

/**
 * Values by 5-tuple. Reconstruction looks tuples up a few times per leg and translation, a
 * million connections at a time: a key string per lookup was a third of its allocations.
 */
export class TupleMap<V> {
  /** One slot, or several when tuples share a hash. */
  private readonly buckets = new Map<number, Slot<V> | Slot<V>[]>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(t: TupleView): V | undefined {
    const b = this.buckets.get(hash(t));
    if (b === undefined) return undefined;
    if (!Array.isArray(b)) return sameTuple(b.tuple, t) ? b.value : undefined;
    for (let i = 0; i < b.length; i++) {
      const slot = b[i] as Slot<V>;
      if (sameTuple(slot.tuple, t)) return slot.value;
    }
    return undefined;
  }

  set(t: TupleView, value: V): void {
    const h = hash(t);
    const b = this.buckets.get(h);
    if (b === undefined) {
      this.buckets.set(h, { tuple: t, value });
      this.count++;
      return;
    }
    if (!Array.isArray(b)) {
      if (sameTuple(b.tuple, t)) {
        b.value = value;
        return;
      }
      this.buckets.set(h, [b, { tuple: t, value }]);
      this.count++;
      return;
    }
    for (let i = 0; i < b.length; i++) {
      const slot = b[i] as Slot<V>;
      if (sameTuple(slot.tuple, t)) {
        slot.value = value;
        return;
      }
    }
    b.push({ tuple: t, value });
    this.count++;
  }

  delete(t: TupleView): boolean {
    const h = hash(t);
    const b = this.buckets.get(h);
    if (b === undefined) return false;
    if (!Array.isArray(b)) {
      if (!sameTuple(b.tuple, t)) return false;
      this.buckets.delete(h);
      this.count--;
      return true;
    }
    for (let i = 0; i < b.length; i++) {
      if (!sameTuple((b[i] as Slot<V>).tuple, t)) continue;
      b.splice(i, 1);
      if (b.length === 1) this.buckets.set(h, b[0] as Slot<V>);
      this.count--;
      return true;
    }
    return false;
  }
}
