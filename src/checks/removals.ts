import type { ServicePortView } from "../reconstruct/types.js";
import type { CheckContext } from "./types.js";
import { endpointText } from "./util.js";

/** A Service port (endpoint null) or one of its endpoints that went away. */
export interface Removal {
  service: string;
  endpoint: string | null;
  /** When it was first seen gone (a snapshot or dump without it). */
  removedAt: number;
  /** When it was last seen present; null when unknown. */
  lastSeen: number | null;
  /** When it came back, if it did. */
  restoredAt: number | null;
  source: "inventory" | "rules";
}

const cache = new WeakMap<CheckContext, Removal[]>();

function epSet(sp: ServicePortView): Set<string> {
  return new Set(sp.endpoints.map((e) => endpointText(e.ip, e.port)));
}

function diffSnapshots(
  seq: readonly { takenAt: number; services: readonly ServicePortView[] }[],
  source: Removal["source"],
): Removal[] {
  const out: Removal[] = [];
  const open = new Map<string, Removal>();
  for (let i = 1; i < seq.length; i++) {
    const prev = seq[i - 1];
    const cur = seq[i];
    if (prev === undefined || cur === undefined) continue;
    const curMap = new Map(cur.services.map((s) => [s.key, s]));
    const prevMap = new Map(prev.services.map((s) => [s.key, s]));
    for (const [key, sp] of prevMap) {
      const now = curMap.get(key);
      if (now === undefined) {
        const r: Removal = {
          service: key,
          endpoint: null,
          removedAt: cur.takenAt,
          lastSeen: prev.takenAt,
          restoredAt: null,
          source,
        };
        if (!open.has(key)) {
          open.set(key, r);
          out.push(r);
        }
        continue;
      }
      const after = epSet(now);
      for (const ep of epSet(sp)) {
        const k = `${key}|${ep}`;
        if (!after.has(ep) && !open.has(k)) {
          const r: Removal = {
            service: key,
            endpoint: ep,
            removedAt: cur.takenAt,
            lastSeen: prev.takenAt,
            restoredAt: null,
            source,
          };
          open.set(k, r);
          out.push(r);
        }
      }
    }
    // Something removed and later back: the removal window closes.
    for (const [k, r] of open) {
      const sp = curMap.get(r.service);
      const back = sp !== undefined && (r.endpoint === null || epSet(sp).has(r.endpoint));
      if (back) {
        r.restoredAt = cur.takenAt;
        open.delete(k);
      }
    }
  }
  return out;
}

/**
 * Removals of Service ports and endpoints. The inventory timeline says when the control plane
 * removed something; without one, a node's later dump that lacks what an earlier dump (of any
 * node) had is the best witness, and the earliest such dump dates the removal.
 */
export function findRemovals(ctx: CheckContext): Removal[] {
  const hit = cache.get(ctx);
  if (hit !== undefined) return hit;
  let out: Removal[];
  if (ctx.inventory.snapshots.length >= 2) {
    out = diffSnapshots(ctx.inventory.snapshots, "inventory");
  } else {
    const earliest = new Map<string, Removal>();
    // Dump by dump within one family: an ip6tables dump lacks every IPv4-only Service.
    for (const node of ctx.rulesets.nodes()) {
      const sequences = [ctx.rulesets.forNode(node, 4), ctx.rulesets.forNode(node, 6)];
      for (const r of sequences.flatMap((seq) => diffSnapshots(seq, "rules"))) {
        const k = `${r.service}|${r.endpoint ?? ""}`;
        const prev = earliest.get(k);
        if (prev === undefined || r.removedAt < prev.removedAt) earliest.set(k, r);
      }
    }
    out = [...earliest.values()];
    // A node that never dropped it is not a restore: take restores only from the same node's view.
  }
  cache.set(ctx, out);
  return out;
}

/** Is t inside the window in which the removal holds (after removal + grace, before restore)? */
export function afterRemoval(r: Removal, t: number, grace: number): boolean {
  return t > r.removedAt + grace && (r.restoredAt === null || t < r.restoredAt);
}
