/**
 * Live packet capture through the optional `cap` package (a libpcap binding), for nodes
 * without tcpdump and for `svctrace capture`.
 *
 * What `cap` gives and what it does not, and what follows from it:
 * - `-i any` opens libpcap's "any" device with LINUX_SLL (v1): packet type (direction) per
 *   packet, but no interface index — cap cannot ask for SLL2. To get interface names on legs,
 *   name the interfaces (`eth0,veth1`): each is opened on its own and becomes its own pcapng
 *   interface with its name. The node's ifindex → name map comes back with the statistics
 *   either way (`svctrace capture --json` prints it), for SLL2 captures taken elsewhere.
 * - No per-packet kernel timestamp: packets are stamped when libpcap hands them to us
 *   (immediate mode, a monotonic clock anchored to the wall clock at start), which is within
 *   microseconds of arrival unless the event loop is busy.
 * - No drop counters (pcap_stats is not exposed): use tcpdump when loss must be measured.
 * - The snap length is cap's fixed 65535 bytes.
 */

import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createPcapngFile, type PacketDirection } from "../capture/pcapng-writer.js";
import { EnvironmentError, UsageError } from "../util/errors.js";

export interface LiveInterface {
  /** Interface number in the output (pcapng IDB order). */
  id: number;
  /** Device name as given to libpcap ("any", "eth0"). */
  name: string;
  /** LINKTYPE_* value (pcap/pcapng link type). */
  linkType: number;
  snapLen: number;
}

export interface LivePacketSink {
  /** A capture device was opened; called before its first packet. */
  interface(iface: LiveInterface): void;
  /** One packet. `data` is a view of a reused buffer, valid only during the call. */
  packet(ifaceId: number, tsSec: number, tsNsec: number, data: Uint8Array, origLen: number): void;
}

export interface LiveCaptureOptions {
  /** "any", one device, or several separated by commas. */
  iface: string;
  /** BPF filter expression (pcap-filter(7)). */
  filter?: string;
  /** Stop after this many packets. */
  count?: number;
  /** Stop after this many seconds. */
  durationSeconds?: number;
  /** Stop when aborted (Ctrl-C). */
  signal?: AbortSignal;
  /** libpcap buffer size in bytes; default 16 MiB (as tcpdump -B 16384). */
  bufferSize?: number;
  /** Called once every device is open and capturing. */
  onReady?: () => void;
}

export interface LiveCaptureStats {
  packets: number;
  /** Packets cut short by the 65535-byte buffer. */
  truncated: number;
  interfaces: LiveInterface[];
  /** The node's ifindex → interface name map at capture start. */
  ifindexNames: Record<number, string>;
  startNs: bigint;
  endNs: bigint;
}

interface CapInstance {
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  close(): void;
  on(event: "packet", listener: (nbytes: number, truncated: boolean) => void): void;
  removeAllListeners(event?: string): void;
}

interface CapModule {
  Cap: new () => CapInstance;
}

/** Cap objects whose open() failed; never collected (see liveCapture). */
const failedHandles: CapInstance[] = [];

const INSTALL_HINT =
  "install libpcap and the optional package: apt-get install libpcap-dev && npm i cap";

/** Load the optional `cap` binding, or explain what to install. */
export async function loadCap(): Promise<CapModule> {
  // A variable specifier: `cap` is optional and ships no types, so TypeScript must not resolve it.
  const name = "cap";
  let mod: unknown;
  try {
    mod = await import(name);
  } catch (error) {
    throw new EnvironmentError(
      `live capture needs the \`cap\` package, which is not installed or did not build (${(error as Error).message.split("\n")[0]}); ${INSTALL_HINT}`,
      { cause: error },
    );
  }
  const m = mod as { default?: CapModule } & Partial<CapModule>;
  const cap = m.Cap !== undefined ? (m as CapModule) : m.default;
  if (cap?.Cap === undefined)
    throw new EnvironmentError(`the \`cap\` package has no Cap class; ${INSTALL_HINT}`);
  return cap;
}

/** The node's interfaces by index, from /sys/class/net (what SLL2's ifindex refers to). */
export function interfaceIndexMap(sysNet = "/sys/class/net"): Record<number, string> {
  const out: Record<number, string> = {};
  let names: string[];
  try {
    names = readdirSync(sysNet);
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      const index = Number(readFileSync(join(sysNet, name, "ifindex"), "utf8").trim());
      if (Number.isInteger(index)) out[index] = name;
    } catch {
      // An interface that vanished while we looked.
    }
  }
  return out;
}

/** cap's link-type names (from the DLT) as LINKTYPE_* numbers. */
export function linkTypeFromCap(name: string): number {
  switch (name) {
    case "NULL":
      return 0;
    case "ETHERNET":
      return 1;
    case "RAW":
      return 101;
    case "LINKTYPE_LINUX_SLL":
      return 113;
    case "IEEE802_11_RADIO":
      return 127;
  }
  // Other DLTs come back as "Unknown linktype N"; on Linux the DLT equals the LINKTYPE for them.
  const m = /Unknown linktype (\d+)/.exec(name);
  if (m) return Number(m[1]);
  throw new EnvironmentError(`libpcap reported an unusable link type: ${name}`);
}

/**
 * Capture until count, duration or abort, handing each packet to the sink. Resolves with the
 * statistics; throws EnvironmentError when cap is missing or a device cannot be opened
 * (permission, no such device) and UsageError for a filter libpcap rejects.
 */
export async function liveCapture(
  options: LiveCaptureOptions,
  sink: LivePacketSink,
): Promise<LiveCaptureStats> {
  const cap = await loadCap();
  const devices = options.iface
    .split(",")
    .map((d) => d.trim())
    .filter((d) => d !== "");
  if (devices.length === 0) throw new UsageError("no capture interface given");
  if (options.count !== undefined && !(Number.isInteger(options.count) && options.count > 0)) {
    throw new UsageError(`packet count ${options.count} must be a positive integer`);
  }
  const ifindexNames = interfaceIndexMap();
  const bufferSize = options.bufferSize ?? 16 * 1024 * 1024;
  const wallAnchorNs = BigInt(Date.now()) * 1_000_000n;
  const monoAnchor = process.hrtime.bigint();
  const stats: LiveCaptureStats = {
    packets: 0,
    truncated: 0,
    interfaces: [],
    ifindexNames,
    startNs: wallAnchorNs,
    endNs: wallAnchorNs,
  };
  const handles: CapInstance[] = [];
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  let done = false;
  const closeAll = () => {
    if (done) return;
    done = true;
    for (const h of handles) {
      h.removeAllListeners("packet");
      try {
        h.close();
      } catch {
        // Closing a handle that failed to open.
      }
    }
    stop();
  };

  try {
    devices.forEach((device, id) => {
      const handle = new cap.Cap();
      // One buffer per device: cap copies each packet into it before emitting.
      const buffer = Buffer.alloc(65535);
      let linkTypeName: string;
      try {
        linkTypeName = handle.open(device, options.filter ?? "", bufferSize, buffer);
      } catch (error) {
        // cap 0.2.1 keeps the half-opened pcap handle after a failed open, and its destructor
        // then stops a libuv poll handle it never started: garbage collection would crash the
        // process. Keeping the object reachable for the process's lifetime avoids that.
        failedHandles.push(handle);
        const message = (error as Error).message;
        if (/filter|syntax|parse/i.test(message)) {
          throw new UsageError(
            `capture filter ${JSON.stringify(options.filter ?? "")} rejected by libpcap: ${message}`,
          );
        }
        throw new EnvironmentError(
          `cannot capture on ${device}: ${message} (live capture needs root or CAP_NET_RAW, and an existing interface)`,
          { cause: error },
        );
      }
      handles.push(handle);
      const iface: LiveInterface = {
        id,
        name: device,
        linkType: linkTypeFromCap(linkTypeName),
        snapLen: 65535,
      };
      stats.interfaces.push(iface);
      sink.interface(iface);
      handle.on("packet", (nbytes, truncated) => {
        if (done) return;
        const ns = wallAnchorNs + (process.hrtime.bigint() - monoAnchor);
        const sec = ns / 1_000_000_000n;
        stats.packets++;
        if (truncated) stats.truncated++;
        sink.packet(
          id,
          Number(sec),
          Number(ns - sec * 1_000_000_000n),
          buffer.subarray(0, nbytes),
          nbytes,
        );
        if (options.count !== undefined && stats.packets >= options.count) closeAll();
      });
    });
  } catch (error) {
    closeAll();
    throw error;
  }

  options.onReady?.();
  let timer: NodeJS.Timeout | null = null;
  if (options.durationSeconds !== undefined) {
    timer = setTimeout(closeAll, Math.max(0, options.durationSeconds * 1000));
  }
  if (options.signal) {
    if (options.signal.aborted) closeAll();
    else options.signal.addEventListener("abort", closeAll, { once: true });
  }
  await stopped;
  if (timer !== null) clearTimeout(timer);
  options.signal?.removeEventListener("abort", closeAll);
  stats.endNs = wallAnchorNs + (process.hrtime.bigint() - monoAnchor);
  return stats;
}

/** The MAC address of an interface ("" when unknown), to tell outgoing Ethernet frames. */
function interfaceMac(name: string): Uint8Array | null {
  try {
    const text = readFileSync(join("/sys/class/net", name, "address"), "utf8").trim();
    const bytes = text.split(":").map((h) => Number.parseInt(h, 16));
    if (bytes.length !== 6 || bytes.some((b) => !Number.isInteger(b))) return null;
    // An all-zero MAC (loopback) tells nothing about direction.
    return bytes.every((b) => b === 0) ? null : Uint8Array.from(bytes);
  } catch {
    return null;
  }
}

/**
 * The direction of one frame for pcapng's epb_flags: from the SLL packet type on "any"
 * (0 host, 1 broadcast, 2 multicast, 3 other host: in; 4 outgoing: out), from the source MAC
 * on an Ethernet device (ours: out).
 */
function directionOf(linkType: number, data: Uint8Array, mac: Uint8Array | null): PacketDirection {
  if (linkType === 113 || linkType === 276) {
    // SLL: packet type at offset 0; SLL2: at offset 10.
    const type = linkType === 113 ? ((data[0] ?? 0) << 8) | (data[1] ?? 0) : (data[10] ?? 255);
    if (type === 4) return "out";
    return type <= 3 ? "in" : "unknown";
  }
  if (linkType === 1 && mac !== null && data.length >= 12) {
    for (let i = 0; i < 6; i++) if (data[6 + i] !== mac[i]) return "in";
    return "out";
  }
  return "unknown";
}

/**
 * Capture into a pcapng file: one interface block per device with its name, nanosecond
 * timestamps, and the direction of each packet in epb_flags when it can be told. Resolves
 * with the statistics when the capture stops; the file is complete by then.
 */
export async function liveCaptureToFile(
  path: string,
  options: LiveCaptureOptions,
): Promise<LiveCaptureStats> {
  // Load cap before creating the file, so a missing binding leaves nothing behind.
  await loadCap();
  let writer: ReturnType<typeof createPcapngFile>;
  try {
    writer = createPcapngFile(path, "svctrace capture");
  } catch (error) {
    throw new EnvironmentError(`cannot write ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const linkTypes: number[] = [];
  const macs: (Uint8Array | null)[] = [];
  let failed = false;
  try {
    return await liveCapture(options, {
      interface(iface) {
        const id = writer.addInterface({
          name: iface.name,
          linkType: iface.linkType,
          snapLen: iface.snapLen,
        });
        linkTypes[id] = iface.linkType;
        macs[id] = iface.linkType === 1 ? interfaceMac(iface.name) : null;
      },
      packet(id, sec, nsec, data, origLen) {
        writer.writePacket(
          id,
          sec,
          nsec,
          data,
          origLen,
          directionOf(linkTypes[id] ?? -1, data, macs[id] ?? null),
        );
      },
    });
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    writer.close();
    // A capture that never started leaves no half-written file behind.
    if (failed) rmSync(path, { force: true });
  }
}
