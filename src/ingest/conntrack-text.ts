import type { ConntrackRow } from "../store/writer.js";
import { InputError, quoteInput } from "../util/errors.js";

const PROTO_NUMBERS: Record<string, number> = {
  icmp: 1,
  tcp: 6,
  udp: 17,
  dccp: 33,
  gre: 47,
  icmpv6: 58,
  sctp: 132,
  udplite: 136,
};

/**
 * `conntrack -L` (plain or `-o extended`, also /proc/net/nf_conntrack) → rows. The first
 * src/dst/sport/dport group is the original direction, the second the reply; a reply tuple that
 * differs from the reversed original is the kernel's record of a NAT. Rows are yielded as lines
 * are read, so a bad line fails the file after earlier rows were written (and rolled back).
 */
export function* parseConntrackText(text: string, source: string): Generator<ConntrackRow> {
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] ?? "").replace(/\r$/, "");
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || /^conntrack v[\d.]+ /.test(line)) continue;
    const tokens = line.split(/\s+/);
    let t = 0;
    if (/^\[[A-Z]+\]$/.test(tokens[t] ?? "")) t++; // `conntrack -E` event type
    let family: "ipv4" | "ipv6" = "ipv4";
    if (tokens[t] === "ipv4" || tokens[t] === "ipv6") {
      family = tokens[t] as "ipv4" | "ipv6";
      t += 2;
    }
    const protoName = tokens[t++] ?? "";
    const proto = Number(tokens[t++]);
    if (!Number.isInteger(proto) || (PROTO_NUMBERS[protoName] ?? proto) !== proto) {
      throw new InputError(`not a conntrack entry: ${quoteInput(raw)}`, {
        file: source,
        line: i + 1,
      });
    }
    let timeout: number | null = null;
    let state: string | null = null;
    const flags: string[] = [];
    const keys: [string, string][] = [];
    for (; t < tokens.length; t++) {
      const tok = tokens[t]!;
      const eq = tok.indexOf("=");
      if (eq > 0) keys.push([tok.slice(0, eq), tok.slice(eq + 1)]);
      else if (/^\[[A-Z_]+\]$/.test(tok)) flags.push(tok.slice(1, -1));
      else if (/^\d+$/.test(tok) && keys.length === 0 && timeout === null) timeout = Number(tok);
      else if (/^[A-Z_]+$/.test(tok) && keys.length === 0) state = tok;
    }
    const tuples: Record<string, string>[] = [];
    let extra: Record<string, string> = {};
    for (const [k, v] of keys) {
      if (k === "src") tuples.push({});
      const current = tuples[tuples.length - 1];
      if (
        current !== undefined &&
        tuples.length <= 2 &&
        !(k in current) &&
        k !== "mark" &&
        k !== "zone" &&
        k !== "use" &&
        k !== "id" &&
        k !== "secctx" &&
        k !== "labels"
      ) {
        current[k] = v;
      } else {
        extra = { ...extra, [k]: v };
      }
    }
    const [orig, reply] = tuples;
    if (
      orig?.src === undefined ||
      orig.dst === undefined ||
      reply?.src === undefined ||
      reply.dst === undefined
    ) {
      throw new InputError(
        `conntrack entry without original and reply tuples: ${quoteInput(raw)}`,
        {
          file: source,
          line: i + 1,
        },
      );
    }
    if (orig.src.includes(":")) family = "ipv6";
    const port = (v: string | undefined): number | null => (v === undefined ? null : Number(v));
    yield {
      line: i + 1,
      family,
      proto,
      state,
      timeout,
      origSrc: orig.src,
      origDst: orig.dst,
      origSport: port(orig.sport),
      origDport: port(orig.dport),
      replySrc: reply.src,
      replyDst: reply.dst,
      replySport: port(reply.sport),
      replyDport: port(reply.dport),
      mark: extra.mark === undefined ? null : Number(extra.mark),
      zone: extra.zone === undefined ? null : Number(extra.zone),
      flags,
      raw,
    };
  }
}
