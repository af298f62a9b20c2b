import type { RuleSetView, ServicePortView } from "../reconstruct/types.js";

const byKey = new WeakMap<object, Map<string, ServicePortView>>();

/** The Service port `key` in a rule set or inventory snapshot (indexed once per source). */
export function findService(
  source: { services: readonly ServicePortView[] },
  key: string,
): ServicePortView | null {
  let map = byKey.get(source);
  if (map === undefined) {
    map = new Map();
    for (const sp of source.services) map.set(sp.key, sp);
    byKey.set(source, map);
  }
  return map.get(key) ?? null;
}

export function endpointText(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Rule lines of a Service's chains, for evidence (bounded). */
export function serviceRuleLines(rs: RuleSetView, sp: ServicePortView, max = 12): string[] {
  const out: string[] = [];
  const chains = [sp.chain, ...sp.endpoints.map((e) => e.chain)];
  for (const chain of chains) {
    if (chain === null) continue;
    for (const r of rs.chainRules(chain)) {
      if (out.length >= max) return out;
      out.push(`${rs.node} line ${r.line}: ${r.rule}`);
    }
  }
  return out;
}

export function round(x: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Group-by helper that keeps insertion order. */
export function groupBy<T>(items: Iterable<T>, key: (item: T) => string | null): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    if (k === null) continue;
    let list = out.get(k);
    if (list === undefined) out.set(k, (list = []));
    list.push(item);
  }
  return out;
}

/**
 * Keep the `max` smallest connection ids seen so far, ascending: the same examples whatever
 * order the connections come in (ids follow start order).
 */
export function keepSmallest(ids: number[], id: number, max = 20): void {
  if (ids.length >= max && id >= (ids[ids.length - 1] ?? Number.POSITIVE_INFINITY)) return;
  let i = ids.length;
  while (i > 0 && (ids[i - 1] ?? 0) > id) i--;
  if (ids[i - 1] === id) return;
  ids.splice(i, 0, id);
  if (ids.length > max) ids.pop();
}

/**
 * Groups looked up by three parts through nested maps: a pass visits millions of connections,
 * and their strings (Service, node, address) are shared, so no key string is built per visit.
 */
export class GroupIndex<G> {
  private readonly root = new Map<unknown, Map<unknown, Map<unknown, G>>>();

  find(a: unknown, b: unknown, c: unknown): G | undefined {
    return this.root.get(a)?.get(b)?.get(c);
  }

  add(a: unknown, b: unknown, c: unknown, group: G): void {
    let mb = this.root.get(a);
    if (mb === undefined) this.root.set(a, (mb = new Map()));
    let mc = mb.get(b);
    if (mc === undefined) mb.set(b, (mc = new Map()));
    mc.set(c, group);
  }
}

/** Connections per endpoint, counted by address then port (no text per visit). */
export class EndpointCounts {
  private readonly byIp = new Map<string, Map<number, number>>();

  add(ip: string, port: number): void {
    let byPort = this.byIp.get(ip);
    if (byPort === undefined) this.byIp.set(ip, (byPort = new Map()));
    byPort.set(port, (byPort.get(port) ?? 0) + 1);
  }

  /** By `endpointText`. */
  byText(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [ip, byPort] of this.byIp) {
      for (const [port, n] of byPort) out.set(endpointText(ip, port), n);
    }
    return out;
  }
}
