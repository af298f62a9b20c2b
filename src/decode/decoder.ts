import { decodeEthernet } from "./ethernet.js";
import { decodeGeneve, GENEVE_PORT } from "./geneve.js";
import { decodeIcmp } from "./icmp.js";
import { decodeIcmpv6 } from "./icmpv6.js";
import { decodeIPv4, ipEnd } from "./ipv4.js";
import { decodeIPv6 } from "./ipv6.js";
import { decodeNull, decodeRawIp } from "./null.js";
import {
  A,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_TEB,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_IPIP,
  IPPROTO_IPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LINKTYPE_ETHERNET,
  LINKTYPE_IPV4,
  LINKTYPE_IPV6,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_LOOP,
  LINKTYPE_NULL,
  LINKTYPE_RAW,
  LINKTYPE_RAW_BSD,
  LINKTYPE_RAW_BSD14,
  type Packet,
  TUNNEL_IPIP,
  TUNNEL_NONE,
} from "./packet.js";
import { decodeSctp } from "./sctp.js";
import { decodeSll } from "./sll.js";
import { decodeSll2 } from "./sll2.js";
import { decodeTcp } from "./tcp.js";
import { decodeUdp } from "./udp.js";
import { decodeVxlan, VXLAN_LINUX_PORT, VXLAN_PORT } from "./vxlan.js";

/** Link types the decoder understands. */
export const SUPPORTED_LINK_TYPES: ReadonlySet<number> = new Set([
  LINKTYPE_NULL,
  LINKTYPE_ETHERNET,
  LINKTYPE_RAW_BSD,
  LINKTYPE_RAW_BSD14,
  LINKTYPE_RAW,
  LINKTYPE_LOOP,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_IPV4,
  LINKTYPE_IPV6,
  LINKTYPE_LINUX_SLL2,
]);

/**
 * Decode one frame into `p` (reset first): link layer, IP, transport, and the inner packet of a
 * VXLAN / Geneve / IP-in-IP tunnel (the outer addresses are kept in `outer*`). The frame is
 * data[start, end). Never throws.
 */
export function decodePacket(
  p: Packet,
  data: Uint8Array,
  linkType: number,
  start = 0,
  end = data.length,
): void {
  p.reset(data, linkType, start, end);
  let off: number;
  switch (linkType) {
    case LINKTYPE_ETHERNET:
      off = decodeEthernet(p, start);
      break;
    case LINKTYPE_LINUX_SLL2:
      off = decodeSll2(p, start);
      break;
    case LINKTYPE_LINUX_SLL:
      off = decodeSll(p, start);
      break;
    case LINKTYPE_RAW:
    case LINKTYPE_RAW_BSD:
    case LINKTYPE_RAW_BSD14:
    case LINKTYPE_IPV4:
    case LINKTYPE_IPV6:
      off = decodeRawIp(p, start);
      break;
    case LINKTYPE_NULL:
    case LINKTYPE_LOOP:
      off = decodeNull(p, start);
      break;
    default:
      p.fail(A.unknown_link_type, false);
      return;
  }
  if (off < 0) return;
  decodeNetwork(p, off, p.etherType);
}

function decodeNetwork(p: Packet, off: number, etherType: number): void {
  let t: number;
  if (etherType === ETHERTYPE_IPV4) t = decodeIPv4(p, off);
  else if (etherType === ETHERTYPE_IPV6) t = decodeIPv6(p, off);
  else return;
  if (t < 0) return;
  const end = ipEnd(p);
  switch (p.proto) {
    case IPPROTO_TCP:
      decodeTcp(p, t, end);
      return;
    case IPPROTO_UDP:
      if (decodeUdp(p, t, end)) decodeUdpTunnel(p, end);
      return;
    case IPPROTO_SCTP:
      decodeSctp(p, t, end);
      return;
    case IPPROTO_ICMP:
      decodeIcmp(p, t, end);
      return;
    case IPPROTO_ICMPV6:
      decodeIcmpv6(p, t, end);
      return;
    case IPPROTO_IPIP:
    case IPPROTO_IPV6:
      if (p.tunnel !== TUNNEL_NONE) {
        p.fail(A.nested_tunnel, false);
        return;
      }
      saveOuter(p);
      p.tunnel = TUNNEL_IPIP;
      p.resetNetwork();
      decodeNetwork(p, t, t < p.end ? innerType(p.data, t) : -1);
      return;
    default:
      return;
  }
}

function innerType(d: Uint8Array, off: number): number {
  const v = (d[off] ?? 0) >> 4;
  return v === 4 ? ETHERTYPE_IPV4 : v === 6 ? ETHERTYPE_IPV6 : -1;
}

function decodeUdpTunnel(p: Packet, end: number): void {
  const port = p.dstPort;
  if (port !== VXLAN_PORT && port !== VXLAN_LINUX_PORT && port !== GENEVE_PORT) return;
  if (p.tunnel !== TUNNEL_NONE) {
    p.fail(A.nested_tunnel, false);
    return;
  }
  const payload = p.payloadOff;
  saveOuter(p);
  let inner: number;
  let innerEtherType: number;
  if (port === GENEVE_PORT) {
    inner = decodeGeneve(p, payload, end);
    if (inner < 0) {
      restoreOuterFailure(p);
      return;
    }
    innerEtherType = p.etherType;
  } else {
    inner = decodeVxlan(p, payload, end);
    if (inner < 0) {
      restoreOuterFailure(p);
      return;
    }
    innerEtherType = ETHERTYPE_TEB;
  }
  p.resetNetwork();
  if (innerEtherType === ETHERTYPE_TEB) {
    inner = decodeEthernet(p, inner);
    if (inner < 0) return;
    innerEtherType = p.etherType;
  }
  decodeNetwork(p, inner, innerEtherType);
}

function saveOuter(p: Packet): void {
  p.outerVersion = p.ipVersion;
  p.outerSrc4 = p.src4;
  p.outerDst4 = p.dst4;
  p.outerSrc6 = p.src6;
  p.outerDst6 = p.dst6;
}

/** A cut tunnel header: keep the outer UDP packet as the packet, not an empty one. */
function restoreOuterFailure(p: Packet): void {
  p.tunnel = TUNNEL_NONE;
  p.outerVersion = 0;
}
