/**
 * IP addresses as numbers and bytes: IPv4 is a uint32 (host order), IPv6 is 16 bytes.
 * Parsing returns a sentinel instead of throwing so hot paths can call it without try/catch.
 */

export type Family = 4 | 6;

/** Parse dotted-quad IPv4 into a uint32; -1 when the text is not an IPv4 address. */
export function parseIPv4(text: string): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      octet = octet * 10 + (c - 48);
      digits++;
      if (octet > 255 || digits > 3) return -1;
    } else if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + octet;
}

export function formatIPv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

/** Parse an IPv6 address (with :: and an optional dotted IPv4 tail); null when invalid. */
export function parseIPv6(text: string): Uint8Array | null {
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  if (text.length < 2) return null;
  const out = new Uint8Array(16);
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const parseGroups = (part: string): number[] | null => {
    if (part === "") return [];
    const groups: number[] = [];
    const items = part.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i] ?? "";
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIPv4(item);
        if (v4 < 0) return null;
        groups.push(v4 >>> 16, v4 & 0xffff);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return null;
        groups.push(Number.parseInt(item, 16));
      }
    }
    return groups;
  };
  const head = parseGroups(halves[0] ?? "");
  const tail = halves.length === 2 ? parseGroups(halves[1] ?? "") : [];
  if (head === null || tail === null) return null;
  if (halves.length === 1 && head.length !== 8) return null;
  if (halves.length === 2 && head.length + tail.length > 7) return null;
  for (let i = 0; i < head.length; i++) {
    out[i * 2] = (head[i] ?? 0) >>> 8;
    out[i * 2 + 1] = (head[i] ?? 0) & 255;
  }
  const start = 8 - tail.length;
  for (let i = 0; i < tail.length; i++) {
    out[(start + i) * 2] = (tail[i] ?? 0) >>> 8;
    out[(start + i) * 2 + 1] = (tail[i] ?? 0) & 255;
  }
  return out;
}

/** RFC 5952 text form of 16 bytes at `offset` (longest zero run compressed, lower case). */
export function formatIPv6(bytes: Uint8Array, offset = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) {
    groups.push(((bytes[offset + i * 2] ?? 0) << 8) | (bytes[offset + i * 2 + 1] ?? 0));
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // IPv4-mapped addresses keep their dotted tail, as every tool prints them.
  if (bestStart === 0 && bestLen === 5 && groups[5] === 0xffff) {
    return `::ffff:${formatIPv4((((groups[6] ?? 0) << 16) | (groups[7] ?? 0)) >>> 0)}`;
  }
  const hex = (g: number) => g.toString(16);
  if (bestStart < 0) return groups.map(hex).join(":");
  const left = groups.slice(0, bestStart).map(hex).join(":");
  const right = groups
    .slice(bestStart + bestLen)
    .map(hex)
    .join(":");
  return `${left}::${right}`;
}

/** Canonical text of any IP address given as text; null when it is not one. */
export function normalizeIP(text: string): string | null {
  const v4 = parseIPv4(text);
  if (v4 >= 0) return formatIPv4(v4);
  const v6 = parseIPv6(text);
  return v6 === null ? null : formatIPv6(v6);
}

/** The family of an address already known to be well formed (normalized text): no parsing. */
export function addressFamily(ip: string): Family {
  return ip.includes(":") ? 6 : 4;
}

export function ipFamily(text: string): Family | null {
  if (parseIPv4(text) >= 0) return 4;
  if (parseIPv6(text) !== null) return 6;
  return null;
}

export interface Cidr {
  family: Family;
  /** IPv4 network as uint32, or 0 for IPv6. */
  v4: number;
  /** IPv6 network bytes, or null for IPv4. */
  v6: Uint8Array | null;
  prefix: number;
}

/** Parse "10.0.0.0/8", "10.0.0.1" (host route), "fd00::/64"; null when invalid. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const prefixText = slash < 0 ? null : text.slice(slash + 1);
  const v4 = parseIPv4(addr);
  if (v4 >= 0) {
    let prefix = 32;
    if (prefixText !== null) {
      // iptables also accepts a dotted netmask (-s 10.0.0.0/255.0.0.0).
      const mask = parseIPv4(prefixText);
      if (mask >= 0) {
        prefix = 32 - Math.log2(2 ** 32 - mask);
        if (!Number.isInteger(prefix)) return null;
      } else {
        if (!/^\d{1,2}$/.test(prefixText)) return null;
        prefix = Number(prefixText);
        if (prefix > 32) return null;
      }
    }
    return { family: 4, v4: (v4 & maskV4(prefix)) >>> 0, v6: null, prefix };
  }
  const v6 = parseIPv6(addr);
  if (v6 === null) return null;
  let prefix = 128;
  if (prefixText !== null) {
    if (!/^\d{1,3}$/.test(prefixText)) return null;
    prefix = Number(prefixText);
    if (prefix > 128) return null;
  }
  for (let bit = prefix; bit < 128; bit++) {
    const byteIndex = bit >> 3;
    v6[byteIndex] = (v6[byteIndex] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return { family: 6, v4: 0, v6, prefix };
}

export function maskV4(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function cidrContainsV4(cidr: Cidr, addr: number): boolean {
  return cidr.family === 4 && (addr & maskV4(cidr.prefix)) >>> 0 === cidr.v4;
}

export function cidrContainsV6(cidr: Cidr, addr: Uint8Array, offset = 0): boolean {
  if (cidr.family !== 6 || cidr.v6 === null) return false;
  const full = cidr.prefix >> 3;
  for (let i = 0; i < full; i++) if (addr[offset + i] !== cidr.v6[i]) return false;
  const rest = cidr.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((addr[offset + full] ?? 0) & mask) === cidr.v6[full];
}

/** Does the CIDR contain the address given as text? */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  const v4 = parseIPv4(ip);
  if (v4 >= 0) return cidrContainsV4(cidr, v4);
  const v6 = parseIPv6(ip);
  return v6 !== null && cidrContainsV6(cidr, v6);
}

export function formatCidr(cidr: Cidr): string {
  const addr = cidr.family === 4 ? formatIPv4(cidr.v4) : formatIPv6(cidr.v6 ?? new Uint8Array(16));
  return `${addr}/${cidr.prefix}`;
}

/** "ip:port" for IPv4, "[ip]:port" for IPv6, as kube-proxy and conntrack users write them. */
export function formatAddrPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** Parse "10.0.0.1:80" or "[fd00::1]:80"; null when invalid. */
export function parseAddrPort(text: string): { ip: string; port: number } | null {
  let ip: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]:");
    if (close < 0) return null;
    ip = text.slice(1, close);
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0 || text.indexOf(":") !== colon) return null;
    ip = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  const norm = normalizeIP(ip);
  if (norm === null || !/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port > 65535) return null;
  return { ip: norm, port };
}
