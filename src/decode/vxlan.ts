import { A, type Packet, TUNNEL_VXLAN } from "./packet.js";

/** UDP ports VXLAN runs on: the IANA port and the Linux kernel's default (flannel's). */
export const VXLAN_PORT = 4789;
export const VXLAN_LINUX_PORT = 8472;

/** VXLAN header (8 bytes: flags with the I bit, 24-bit VNI). Returns the inner Ethernet offset. */
export function decodeVxlan(p: Packet, off: number, end: number): number {
  const d = p.data;
  if (end - off < 8) {
    p.fail(A.truncated_vxlan_header);
    return -1;
  }
  p.tunnel = TUNNEL_VXLAN;
  p.vni = (d[off]! & 0x08) !== 0 ? (d[off + 4]! << 16) | (d[off + 5]! << 8) | d[off + 6]! : -1;
  return off + 8;
}
