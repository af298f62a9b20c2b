import { A, FRAG_FIRST, FRAG_LATER, type Packet, u16 } from "./packet.js";

const HOP_BY_HOP = 0;
const ROUTING = 43;
const FRAGMENT = 44;
const AUTH = 51;
const DEST_OPTS = 60;
const MOBILITY = 135;
const HIP = 139;
const SHIM6 = 140;

/**
 * IPv6 and its extension headers (hop-by-hop, routing, fragment, AH, destination options,
 * mobility). Addresses are left in place: `src6`/`dst6` are their offsets. Returns the
 * transport offset with `proto` set to the final next-header, or -1.
 */
export function decodeIPv6(p: Packet, off: number): number {
  const d = p.data;
  if (p.end - off < 40) {
    p.fail(A.truncated_ipv6_header);
    return -1;
  }
  if (d[off]! >> 4 !== 6) {
    p.fail(A.bad_ip_version, false);
    return -1;
  }
  p.ipVersion = 6;
  p.ipOff = off;
  p.ipLen = 40 + u16(d, off + 4);
  p.ttl = d[off + 7]!;
  p.src6 = off + 8;
  p.dst6 = off + 24;
  p.src4 = 0;
  p.dst4 = 0;
  p.ipId = 0;
  let next = d[off + 6]!;
  let o = off + 40;
  for (;;) {
    switch (next) {
      case HOP_BY_HOP:
      case ROUTING:
      case DEST_OPTS:
      case MOBILITY:
      case HIP:
      case SHIM6: {
        if (p.end - o < 8) {
          p.fail(A.truncated_ipv6_extension_header);
          return -1;
        }
        next = d[o]!;
        o += (d[o + 1]! + 1) * 8;
        continue;
      }
      case AUTH: {
        if (p.end - o < 8) {
          p.fail(A.truncated_ipv6_extension_header);
          return -1;
        }
        next = d[o]!;
        o += (d[o + 1]! + 2) * 4;
        continue;
      }
      case FRAGMENT: {
        if (p.end - o < 8) {
          p.fail(A.truncated_ipv6_extension_header);
          return -1;
        }
        next = d[o]!;
        const fragField = u16(d, o + 2);
        // The identification is what ties fragments together; keep its low bits like IPv4's ID.
        p.ipId = u16(d, o + 6);
        o += 8;
        if (fragField >> 3 !== 0) {
          p.proto = next;
          p.fragment = FRAG_LATER;
          p.fail(A.ipv6_later_fragment, false);
          return -1;
        }
        if (fragField & 1) p.fragment = FRAG_FIRST;
        continue;
      }
      default:
        p.proto = next;
        if (o > p.end) {
          p.fail(A.truncated_ipv6_extension_header);
          return -1;
        }
        return o;
    }
  }
}
