/** `-m set` lookups backed by a parsed `ipset save` (src/rules/ipset.ts). */

import { type IpSet, ipsetContains } from "../rules/ipset.js";
import type { IpSetLookup } from "./types.js";

export function ipsetLookup(sets: Map<string, IpSet>): IpSetLookup {
  return {
    test(name, values) {
      const set = sets.get(name);
      if (set === undefined) return undefined;
      // Each --match-set direction feeds one dimension: an address, or "proto:port".
      const dims = set.type.startsWith("list:") ? [] : set.dimensions;
      const parts = values.map((v, d) =>
        dims[d] === "port" ? `${v.proto ?? "tcp"}:${v.port ?? 0}` : (v.ip ?? ""),
      );
      return ipsetContains(sets, name, parts);
    },
  };
}
