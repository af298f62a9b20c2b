/**
 * What the capture readers hand out. A reader fills one reused `CaptureRecord` per packet; its
 * `data` is a view into the reader's buffer and is valid only until the next record is delivered
 * (gopacket's ZeroCopyReadPacketData contract). Copy it if you need it longer.
 */

export type CaptureFormat = "pcap" | "pcapng";

export interface CaptureInterface {
  /** Capture-wide interface number: pcapng IDB order across all sections; 0 for classic pcap. */
  id: number;
  /** pcapng `if_name`, when the writer recorded one. */
  name: string | null;
  linkType: number;
  snapLen: number;
}

export interface CaptureRecord {
  /** Seconds since the epoch (integer). */
  tsSec: number;
  /** Nanoseconds within the second, 0..999999999. */
  tsNsec: number;
  /** Captured bytes; valid until the next record. */
  data: Uint8Array;
  /** Length of the packet on the wire (may exceed data.length when the snap length cut it). */
  origLen: number;
  interfaceId: number;
  linkType: number;
  /** pcapng EPB/PB flags word (direction in bits 0-1), or -1 when the record carries none. */
  flags: number;
  /** Byte offset of the record (pcap record header / pcapng block) in the (decompressed) stream. */
  offset: number;
}

export interface RecordSink {
  /** A new interface is known (pcap header, pcapng IDB). Called before its first record. */
  interface(iface: CaptureInterface): void;
  /** One packet; `rec` is reused for the next call. */
  record(rec: CaptureRecord): void;
}

export function newCaptureRecord(): CaptureRecord {
  return {
    tsSec: 0,
    tsNsec: 0,
    data: new Uint8Array(0),
    origLen: 0,
    interfaceId: 0,
    linkType: 0,
    flags: -1,
    offset: 0,
  };
}

/** pcapng EPB flags direction bits. */
export const EPB_DIR_UNKNOWN = 0;
export const EPB_DIR_INBOUND = 1;
export const EPB_DIR_OUTBOUND = 2;
