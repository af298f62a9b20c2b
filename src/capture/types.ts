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

/**
 * One packet record. The frame is buf[start, end): readers point into their own buffer instead of
 * making a view per packet; `data` makes that view on demand.
 */
export class CaptureRecord {
  /** Seconds since the epoch (integer). */
  tsSec = 0;
  /** Nanoseconds within the second, 0..999999999. */
  tsNsec = 0;
  /** The reader's buffer; the captured bytes are buf[start, end), valid until the next record. */
  buf: Uint8Array = new Uint8Array(0);
  start = 0;
  end = 0;
  /** Length of the packet on the wire (may exceed the captured length when the snap length cut it). */
  origLen = 0;
  interfaceId = 0;
  linkType = 0;
  /** pcapng EPB/PB flags word (direction in bits 0-1), or -1 when the record carries none. */
  flags = -1;
  /** Byte offset of the record (pcap record header / pcapng block) in the (decompressed) stream. */
  offset = 0;

  /** Captured bytes (a view; valid until the next record). */
  get data(): Uint8Array {
    return this.buf.subarray(this.start, this.end);
  }
}

export interface RecordSink {
  /** A new interface is known (pcap header, pcapng IDB). Called before its first record. */
  interface(iface: CaptureInterface): void;
  /** One packet; `rec` is reused for the next call. */
  record(rec: CaptureRecord): void;
}

export function newCaptureRecord(): CaptureRecord {
  return new CaptureRecord();
}

/** pcapng EPB flags direction bits. */
export const EPB_DIR_UNKNOWN = 0;
export const EPB_DIR_INBOUND = 1;
export const EPB_DIR_OUTBOUND = 2;
