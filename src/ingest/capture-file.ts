import { readCaptureFile, readHead as readHeadRaw, sniffFormat } from "../capture/reader.js";
import type { CaptureInterface, CaptureRecord } from "../capture/types.js";
import { decodePacket, SUPPORTED_LINK_TYPES } from "../decode/decoder.js";
import { DNS_PORT, parseDns } from "../decode/dns.js";
import {
  ANOMALY_NAMES,
  DIR_IN,
  DIR_OUT,
  DIR_UNKNOWN,
  IPPROTO_TCP,
  LINKTYPE_LINUX_SLL2,
  Packet,
} from "../decode/packet.js";
import { FlowTable } from "../flow/table.js";
import type { DnsRecord, LegRecord, TranslationRecord } from "../flow/types.js";
import { formatIPv4, formatIPv6 } from "../util/ip.js";

/**
 * One capture file → legs, translations and DNS messages, streamed to a sink. This is the
 * contract between the capture/decode/flow layers and the store: the store engineer's ingest
 * calls `ingestCaptureFile` inside its per-file transaction.
 */

export interface CaptureInterfaceInfo {
  id: number;
  name: string | null;
  linkType: number;
}

export interface CaptureSink {
  /** May be called again as new interfaces appear (pcapng IDBs, SLL2 ifindexes). */
  interfaces(list: CaptureInterfaceInfo[]): void;
  leg(rec: LegRecord): void;
  translation(rec: TranslationRecord): void;
  dns(rec: DnsRecord): void;
}

export interface CaptureFileSummary {
  format: "pcap" | "pcapng";
  compressed: boolean;
  linkTypes: number[];
  packets: number;
  bytes: number;
  firstTs: number | null;
  lastTs: number | null;
  /** snake_case names → counts (truncated_ipv4_header, …). */
  anomalies: Record<string, number>;
  /** e.g. "file cut short at byte offset N: M records read". */
  warnings: string[];
  legs: number;
  translations: number;
  dnsMessages: number;
}

export interface CaptureFileOptions {
  /** Seconds; default 120. */
  udpIdleTimeout?: number;
  /** Seconds; default 300. */
  tcpIdleTimeout?: number;
  onProgress?: (bytesRead: number, packets: number) => void;
  /** Every chunk of the file as read (see ReadOptions.onRawChunk). */
  onRawChunk?: (chunk: Buffer) => void;
}

/**
 * For SLL2 frames the observation point is the kernel interface, not the capture's one "any"
 * interface: interface ids become `captureInterface * SLL2_IFINDEX_SPAN + ifindex`.
 */
export const SLL2_IFINDEX_SPAN = 1_000_000;

/** Cheap content sniff used by ingest to route files: first bytes of a file (after gunzip if gz). */
export function sniffCaptureFormat(head: Uint8Array): "pcap" | "pcapng" | null {
  return sniffFormat(head);
}

/** First `n` bytes of a file, gunzipped when it is gzip (for `sniffCaptureFormat`). */
export function readHead(path: string, n = 64): Uint8Array {
  return readHeadRaw(path, n);
}

/**
 * Reads the whole file (pcap / pcapng, optionally .gz — sniffed by content), decodes, tracks
 * legs and translations, streams records to the sink. Throws InputError (file + byte offset) for
 * a file that is not a capture or has an impossible length; a file cut short returns normally
 * with a warning.
 */
export async function ingestCaptureFile(
  path: string,
  sink: CaptureSink,
  options: CaptureFileOptions = {},
): Promise<CaptureFileSummary> {
  const packet = new Packet();
  let legs = 0;
  let translations = 0;
  let dnsMessages = 0;
  const flowOptions: { udpIdleTimeout?: number; tcpIdleTimeout?: number } = {};
  if (options.udpIdleTimeout !== undefined) flowOptions.udpIdleTimeout = options.udpIdleTimeout;
  if (options.tcpIdleTimeout !== undefined) flowOptions.tcpIdleTimeout = options.tcpIdleTimeout;
  const table = new FlowTable(
    {
      leg(rec) {
        legs++;
        sink.leg(rec);
      },
      translation(rec) {
        translations++;
        sink.translation(rec);
      },
    },
    flowOptions,
  );
  const anomalyCounts = new Float64Array(ANOMALY_NAMES.length);
  const interfaces = new Map<number, CaptureInterface>();
  /** Derived SLL2 interface ids already announced. */
  const sll2Seen = new Set<number>();
  let lastSll2 = -1;
  let unsupportedLinkType = 0;
  let packets = 0;
  // [first, last] in a typed array: a double in a closure variable is a heap box per write.
  const tsBounds = Float64Array.of(Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY);
  let dnsFailures = 0;

  const onRecord = (rec: CaptureRecord): void => {
    packets++;
    const ts = rec.tsSec + rec.tsNsec / 1e9;
    if (ts < tsBounds[0]!) tsBounds[0] = ts;
    if (ts > tsBounds[1]!) tsBounds[1] = ts;
    if (!SUPPORTED_LINK_TYPES.has(rec.linkType)) {
      unsupportedLinkType++;
      return;
    }
    decodePacket(packet, rec.buf, rec.linkType, rec.start, rec.end);
    if (packet.anomaly !== 0) anomalyCounts[packet.anomaly]!++;
    let ifId = rec.interfaceId;
    if (rec.linkType === LINKTYPE_LINUX_SLL2 && packet.ifindex >= 0) {
      ifId = rec.interfaceId * SLL2_IFINDEX_SPAN + packet.ifindex;
      if (ifId !== lastSll2 && !sll2Seen.has(ifId)) {
        sll2Seen.add(ifId);
        sink.interfaces([{ id: ifId, name: null, linkType: rec.linkType }]);
      }
      lastSll2 = ifId;
    }
    if (packet.direction === DIR_UNKNOWN && rec.flags >= 0) {
      const bits = rec.flags & 3;
      packet.direction = bits === 1 ? DIR_IN : bits === 2 ? DIR_OUT : DIR_UNKNOWN;
    }
    table.add(packet, ts, ifId);
    if (
      packet.hasPorts &&
      packet.payloadLen > 0 &&
      (packet.srcPort === DNS_PORT || packet.dstPort === DNS_PORT)
    ) {
      const rec2 = dnsRecord(packet, ts, ifId);
      if (rec2 !== null) {
        dnsMessages++;
        sink.dns(rec2);
      } else if (packet.proto !== IPPROTO_TCP) {
        // A TCP segment may carry part of a message: only UDP payloads must parse.
        dnsFailures++;
      }
    }
  };

  const summary = await readCaptureFile(
    path,
    {
      interface(iface) {
        interfaces.set(iface.id, iface);
        // SLL2 interfaces are announced per kernel ifindex as they appear instead.
        if (iface.linkType !== LINKTYPE_LINUX_SLL2) {
          sink.interfaces([{ id: iface.id, name: iface.name, linkType: iface.linkType }]);
        }
      },
      record: onRecord,
    },
    {
      ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      ...(options.onRawChunk === undefined ? {} : { onRawChunk: options.onRawChunk }),
    },
  );
  table.flush();

  const anomalies: Record<string, number> = {};
  for (let i = 1; i < ANOMALY_NAMES.length; i++) {
    if (anomalyCounts[i]! > 0) anomalies[ANOMALY_NAMES[i]!] = anomalyCounts[i]!;
  }
  if (unsupportedLinkType > 0) anomalies["unsupported_link_type"] = unsupportedLinkType;
  if (dnsFailures > 0) anomalies["unparsed_dns_message"] = dnsFailures;
  return {
    format: summary.format,
    compressed: summary.compressed,
    linkTypes: summary.linkTypes,
    packets,
    bytes: summary.bytes,
    firstTs: packets > 0 ? tsBounds[0]! : null,
    lastTs: packets > 0 ? tsBounds[1]! : null,
    anomalies,
    warnings: summary.warnings,
    legs,
    translations,
    dnsMessages,
  };
}

function dnsRecord(p: Packet, ts: number, ifId: number): DnsRecord | null {
  const tcp = p.proto === IPPROTO_TCP;
  const msg = parseDns(p.data.subarray(p.payloadOff, p.payloadOff + p.payloadLen), tcp);
  if (msg === null) return null;
  const src = p.ipVersion === 4 ? formatIPv4(p.src4) : formatIPv6(p.data, p.src6);
  const dst = p.ipVersion === 4 ? formatIPv4(p.dst4) : formatIPv6(p.data, p.dst6);
  // The server is the side on port 53 (the sender, for a response).
  const fromServer = msg.isResponse ? p.srcPort === DNS_PORT : p.dstPort !== DNS_PORT;
  return {
    ts,
    interfaceId: ifId,
    proto: p.proto,
    clientIp: fromServer ? dst : src,
    clientPort: fromServer ? p.dstPort : p.srcPort,
    serverIp: fromServer ? src : dst,
    serverPort: fromServer ? p.srcPort : p.dstPort,
    id: msg.id,
    isResponse: msg.isResponse,
    qname: msg.qname,
    qtype: msg.qtype,
    rcode: msg.rcode,
    answers: msg.answers,
  };
}
