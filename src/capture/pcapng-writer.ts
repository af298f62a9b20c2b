import { closeSync, openSync, writeSync } from "node:fs";
import { EPB_DIR_INBOUND, EPB_DIR_OUTBOUND } from "./types.js";

/**
 * A small pcapng writer (little-endian): one section header, interface blocks with `if_name` and
 * nanosecond `if_tsresol`, enhanced packet blocks with the direction in `epb_flags`. The lab's
 * live capture writes through it; our reader, Wireshark and tcpdump read what it writes.
 */

export interface PcapngInterfaceSpec {
  name?: string | null;
  linkType: number;
  snapLen?: number;
}

export type PacketDirection = "in" | "out" | "unknown";

const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 1;
const BT_EPB = 6;
const encoder = new TextEncoder();

function pad4(n: number): number {
  return (n + 3) & ~3;
}

export class PcapngWriter {
  private buf = new Uint8Array(1 << 16);
  private dv = new DataView(this.buf.buffer);
  private used = 0;
  private interfaces = 0;

  /** `sink` receives whole blocks in order (buffered; call flush()/close()). */
  constructor(
    private readonly sink: (bytes: Uint8Array) => void,
    userAppl = "svctrace",
  ) {
    const appl = encoder.encode(userAppl);
    const optLen = 4 + pad4(appl.length) + 4;
    const len = 28 + optLen;
    const o = this.reserve(len);
    const dv = this.dv;
    dv.setUint32(o, BT_SHB, true);
    dv.setUint32(o + 4, len, true);
    dv.setUint32(o + 8, 0x1a2b3c4d, true);
    dv.setUint16(o + 12, 1, true);
    dv.setUint16(o + 14, 0, true);
    // Section length unknown (-1): we stream.
    dv.setInt32(o + 16, -1, true);
    dv.setInt32(o + 20, -1, true);
    let p = o + 24;
    dv.setUint16(p, 4, true); // shb_userappl
    dv.setUint16(p + 2, appl.length, true);
    this.buf.set(appl, p + 4);
    p += 4 + pad4(appl.length);
    dv.setUint32(p, 0, true); // opt_endofopt
    dv.setUint32(o + len - 4, len, true);
  }

  /** Describe an interface; returns its id for writePacket. Timestamps are in nanoseconds. */
  addInterface(spec: PcapngInterfaceSpec): number {
    const name = spec.name ? encoder.encode(spec.name) : null;
    let optLen = 4 + 4 + 4; // if_tsresol (1 byte padded) + opt_endofopt
    if (name !== null) optLen += 4 + pad4(name.length);
    const len = 20 + optLen;
    const o = this.reserve(len);
    const dv = this.dv;
    dv.setUint32(o, BT_IDB, true);
    dv.setUint32(o + 4, len, true);
    dv.setUint16(o + 8, spec.linkType, true);
    dv.setUint16(o + 10, 0, true);
    dv.setUint32(o + 12, spec.snapLen ?? 262144, true);
    let p = o + 16;
    if (name !== null) {
      dv.setUint16(p, 2, true); // if_name
      dv.setUint16(p + 2, name.length, true);
      this.buf.set(name, p + 4);
      this.buf.fill(0, p + 4 + name.length, p + 4 + pad4(name.length));
      p += 4 + pad4(name.length);
    }
    dv.setUint16(p, 9, true); // if_tsresol
    dv.setUint16(p + 2, 1, true);
    dv.setUint32(p + 4, 9, true); // 10^-9, padding zero
    p += 8;
    dv.setUint32(p, 0, true);
    dv.setUint32(o + len - 4, len, true);
    return this.interfaces++;
  }

  /** One packet: `tsSec` + `tsNsec` since the epoch, captured bytes, original length. */
  writePacket(
    interfaceId: number,
    tsSec: number,
    tsNsec: number,
    data: Uint8Array,
    origLen = data.length,
    direction: PacketDirection = "unknown",
  ): void {
    if (interfaceId < 0 || interfaceId >= this.interfaces) {
      throw new RangeError(`pcapng writer: interface ${interfaceId} was never added`);
    }
    const withFlags = direction !== "unknown";
    const len = 32 + pad4(data.length) + (withFlags ? 12 : 0);
    const o = this.reserve(len);
    const dv = this.dv;
    const ts = BigInt(tsSec) * 1_000_000_000n + BigInt(tsNsec);
    dv.setUint32(o, BT_EPB, true);
    dv.setUint32(o + 4, len, true);
    dv.setUint32(o + 8, interfaceId, true);
    dv.setUint32(o + 12, Number(ts >> 32n), true);
    dv.setUint32(o + 16, Number(ts & 0xffffffffn), true);
    dv.setUint32(o + 20, data.length, true);
    dv.setUint32(o + 24, origLen, true);
    this.buf.set(data, o + 28);
    this.buf.fill(0, o + 28 + data.length, o + 28 + pad4(data.length));
    let p = o + 28 + pad4(data.length);
    if (withFlags) {
      dv.setUint16(p, 2, true); // epb_flags
      dv.setUint16(p + 2, 4, true);
      dv.setUint32(p + 4, direction === "in" ? EPB_DIR_INBOUND : EPB_DIR_OUTBOUND, true);
      dv.setUint32(p + 8, 0, true);
      p += 12;
    }
    dv.setUint32(o + len - 4, len, true);
  }

  flush(): void {
    if (this.used === 0) return;
    this.sink(this.buf.slice(0, this.used));
    this.used = 0;
  }

  private reserve(len: number): number {
    if (this.used + len > this.buf.length) {
      this.flush();
      if (len > this.buf.length) {
        this.buf = new Uint8Array(pad4(len) * 2);
        this.dv = new DataView(this.buf.buffer);
      }
    }
    const o = this.used;
    this.used += len;
    return o;
  }
}

/** A writer on a new file; `close()` flushes and closes it. */
export function createPcapngFile(
  path: string,
  userAppl?: string,
): PcapngWriter & { close(): void } {
  const fd = openSync(path, "w");
  const writer = new PcapngWriter((bytes) => {
    writeSync(fd, bytes);
  }, userAppl) as PcapngWriter & { close(): void };
  writer.close = () => {
    writer.flush();
    closeSync(fd);
  };
  return writer;
}
