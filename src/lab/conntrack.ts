/*
 * Just enough of `conntrack -L` to check the lab's ground truth against the kernel's: the
 * original and reply tuples of each entry. (src/rules has the full parser for analysis.)
 */

export interface CtTuple {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

export interface CtEntry {
  proto: string;
  orig: CtTuple;
  reply: CtTuple;
  state: string | null;
}

export function parseConntrackList(text: string): CtEntry[] {
  const out: CtEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    const proto = fields[0];
    if (proto !== "tcp" && proto !== "udp") continue;
    const tuples: Partial<CtTuple>[] = [];
    let state: string | null = null;
    for (const f of fields.slice(3)) {
      const eq = f.indexOf("=");
      if (eq < 0) {
        if (/^[A-Z_]+$/.test(f) && tuples.length === 0) state = f;
        continue;
      }
      const key = f.slice(0, eq);
      const value = f.slice(eq + 1);
      if (key === "src") tuples.push({ src: value });
      const cur = tuples[tuples.length - 1];
      if (!cur) continue;
      if (key === "dst") cur.dst = value;
      else if (key === "sport") cur.sport = Number(value);
      else if (key === "dport") cur.dport = Number(value);
    }
    const [o, r] = tuples;
    if (!o || !r || o.dst === undefined || r.dst === undefined) continue;
    out.push({
      proto,
      orig: o as CtTuple,
      reply: r as CtTuple,
      state,
    });
  }
  return out;
}

/** The endpoint (reply source) and SNAT (reply destination when it differs) of an entry. */
export function ctTranslation(entry: CtEntry): { endpoint: string; snat: string | null } {
  const endpoint = `${entry.reply.src}:${entry.reply.sport}`;
  const snatted = entry.reply.dst !== entry.orig.src || entry.reply.dport !== entry.orig.sport;
  return { endpoint, snat: snatted ? `${entry.reply.dst}:${entry.reply.dport}` : null };
}
