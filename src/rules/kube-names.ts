/**
 * kube-proxy's chain names, recomputed (pkg/proxy/iptables/proxier.go): a prefix plus the first
 * 16 characters of base32(sha256(servicePortName + protocol [+ endpoint])). The service port
 * name is `ns/name:port` (`ns/name` for an unnamed port), the protocol lower-case ("tcp"), the
 * endpoint `ip:port` (`[ip6]:port`). With them a dump whose comments were dropped (kube-proxy
 * drops per-endpoint comments above 1000 endpoints) still maps back to Services.
 */

import { createHash } from "node:crypto";

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** The first `chars` characters of RFC 4648 base32 (Go's StdEncoding) of the bytes. */
function base32Prefix(bytes: Uint8Array, chars: number): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (let i = 0; i < bytes.length && out.length < chars; i++) {
    buffer = ((buffer << 8) | (bytes[i] as number)) & 0xffff;
    bits += 8;
    while (bits >= 5 && out.length < chars) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

function hash16(text: string): string {
  return base32Prefix(createHash("sha256").update(text).digest(), 16);
}

/** `portProtoHash`: the 16-character suffix shared by a service port's chains. */
export function portProtoHash(servicePortName: string, protocol: string): string {
  return hash16(servicePortName + protocol.toLowerCase());
}

/** KUBE-SVC-…: the Cluster-policy chain (endpoints of the whole cluster). */
export function serviceChainName(servicePortName: string, protocol: string): string {
  return `KUBE-SVC-${portProtoHash(servicePortName, protocol)}`;
}

/** KUBE-SVL-…: the Local-policy chain (this node's endpoints). */
export function serviceLocalChainName(servicePortName: string, protocol: string): string {
  return `KUBE-SVL-${portProtoHash(servicePortName, protocol)}`;
}

/** KUBE-EXT-…: entry for external destinations (NodePort, externalIPs, LoadBalancer). */
export function serviceExternalChainName(servicePortName: string, protocol: string): string {
  return `KUBE-EXT-${portProtoHash(servicePortName, protocol)}`;
}

/** KUBE-FW-…: loadBalancerSourceRanges filter. */
export function serviceFirewallChainName(servicePortName: string, protocol: string): string {
  return `KUBE-FW-${portProtoHash(servicePortName, protocol)}`;
}

/** KUBE-XLB-…: the older (before KUBE-EXT/KUBE-SVL) Local-policy chain. */
export function serviceXlbChainName(servicePortName: string, protocol: string): string {
  return `KUBE-XLB-${portProtoHash(servicePortName, protocol)}`;
}

/** `ip:port`, with brackets for IPv6, as kube-proxy's endpoint string. */
export function endpointString(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** KUBE-SEP-…: one endpoint's chain. `endpoint` is `ip:port` / `[ip6]:port`. */
export function endpointChainName(
  servicePortName: string,
  protocol: string,
  endpoint: string,
): string {
  return `KUBE-SEP-${hash16(servicePortName + protocol.toLowerCase() + endpoint)}`;
}

export type KubeChainKind = "SVC" | "SVL" | "EXT" | "FW" | "SEP" | "XLB";

const KIND = /^KUBE-(SVC|SVL|EXT|FW|SEP|XLB)-([A-Z2-7]{16})$/;

/** Which per-service chain family a name belongs to; null for any other chain. */
export function kubeChainKind(chain: string): KubeChainKind | null {
  const m = KIND.exec(chain);
  return m === null ? null : (m[1] as KubeChainKind);
}

/** The 16-character hash of a per-service chain name; null for others. */
export function kubeChainHash(chain: string): string | null {
  const m = KIND.exec(chain);
  return m === null ? null : (m[2] as string);
}

/** All per-service-port chain names for one service port, keyed by kind (SEP excluded). */
export function servicePortChains(
  servicePortName: string,
  protocol: string,
): Record<Exclude<KubeChainKind, "SEP">, string> {
  const h = portProtoHash(servicePortName, protocol);
  return {
    SVC: `KUBE-SVC-${h}`,
    SVL: `KUBE-SVL-${h}`,
    EXT: `KUBE-EXT-${h}`,
    FW: `KUBE-FW-${h}`,
    XLB: `KUBE-XLB-${h}`,
  };
}
