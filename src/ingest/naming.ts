import { basename, sep } from "node:path";
import { parseTimeArg } from "../util/time.js";

/**
 * The node a file belongs to, when the user did not say (`--node` always wins):
 * 1. inside a bundle, `nodes/<node>/…` → `<node>` (and a lab's `clients/<client>/…` → `<client>`);
 * 2. else the file's base name up to its first `.`: `node1.pcap.gz` → `node1`,
 *    `worker-2.iptables` → `worker-2`. Node names with dots need `--node` or the bundle layout.
 * Files that belong to no node (inventory JSON) get null from the caller, not from here.
 */
export function nodeFromPath(path: string): string {
  const parts = path.split(sep).filter((p) => p !== "");
  for (let i = parts.length - 3; i >= 0; i--) {
    if ((parts[i] === "nodes" || parts[i] === "clients") && parts[i + 1] !== undefined)
      return parts[i + 1]!;
  }
  const base = basename(path);
  const dot = base.indexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

/**
 * A time written in a file name, as the bundle layout names dumps (`iptables-<time>.save`,
 * `inventory/<time>.json`): ISO 8601 (`2026-11-25T16:20:00Z`, or with `-` instead of `:` in the
 * time since colons are awkward in file names, or compact `20261125T162000Z`) or epoch seconds
 * (9 to 11 digits, optional fraction). Null when the name carries none.
 */
export function timeFromFileName(path: string): number | null {
  const base = basename(path);
  const iso =
    /(\d{4})-?(\d{2})-?(\d{2})[T_ ](\d{2})[-:]?(\d{2})[-:]?(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?/.exec(
      base,
    );
  if (iso) {
    const [, y, mo, d, h, mi, s, frac, zone] = iso;
    return parseTimeArg(`${y}-${mo}-${d}T${h}:${mi}:${s}${frac ?? ""}${zone ?? "Z"}`);
  }
  const epoch = /(?:^|[^\d])(\d{9,11}(?:\.\d+)?)(?=[^\d]|$)/.exec(base);
  if (epoch) return Number(epoch[1]);
  return null;
}
