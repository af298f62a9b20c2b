import type { Db } from "./db.js";

/** SLL2 captures (`tcpdump -i any`) carry an interface index per packet, not a name. */
const LINKTYPE_LINUX_SLL2 = 276;
/** Capture-local interface ids of SLL2 frames are `SLL2_IFINDEX_SPAN × interface + ifindex`. */
const SLL2_IFINDEX_SPAN = 1_000_000;

interface IpAddrEntry {
  ifindex?: unknown;
  ifname?: unknown;
}

/**
 * Names the SLL2 interfaces of each node's captures from that node's `ip -j addr` dump
 * (`nodes/<node>/addr.json` in a bundle), so legs read `eth0/in` rather than `if2/in`. Only
 * unnamed interfaces are touched; a later dump for the node wins. Returns how many were named.
 */
export function nameInterfacesFromAddrDumps(db: Db): number {
  const names = new Map<string, Map<number, string>>();
  const dumps = db
    .prepare(
      "SELECT node, text FROM documents WHERE kind = 'ip-addr-json' AND node IS NOT NULL ORDER BY taken_at, id",
    )
    .all() as { node: string; text: string }[];
  for (const dump of dumps) {
    let entries: unknown;
    try {
      entries = JSON.parse(dump.text);
    } catch {
      continue; // Stored as given; a dump we cannot read names nothing.
    }
    if (!Array.isArray(entries)) continue;
    const byIndex = names.get(dump.node) ?? new Map<number, string>();
    for (const entry of entries as IpAddrEntry[]) {
      if (typeof entry?.ifindex === "number" && typeof entry.ifname === "string") {
        byIndex.set(entry.ifindex, entry.ifname);
      }
    }
    names.set(dump.node, byIndex);
  }
  if (names.size === 0) return 0;
  const unnamed = db
    .prepare(
      `SELECT i.capture_id AS captureId, i.idx AS idx, c.node AS node
         FROM interfaces i JOIN captures c ON c.id = i.capture_id
        WHERE i.name IS NULL AND i.link_type = ? AND c.node IS NOT NULL`,
    )
    .all(LINKTYPE_LINUX_SLL2) as { captureId: number; idx: number; node: string }[];
  const update = db.prepare("UPDATE interfaces SET name = ? WHERE capture_id = ? AND idx = ?");
  let named = 0;
  db.transaction(() => {
    for (const row of unnamed) {
      const name = names.get(row.node)?.get(row.idx % SLL2_IFINDEX_SPAN);
      if (name === undefined) continue;
      update.run(name, row.captureId, row.idx);
      named++;
    }
  })();
  return named;
}
