import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodePacket, SUPPORTED_LINK_TYPES } from "../../src/decode/decoder.js";
import { Packet } from "../../src/decode/packet.js";
import { FlowTable } from "../../src/flow/table.js";
import { bytes, eth, ipv4, tcp, udp } from "./build.js";

const linkTypes = [...SUPPORTED_LINK_TYPES];

describe("hostile frames", () => {
  it("random bytes never throw, never read past the frame, on every link type", () => {
    const p = new Packet();
    const table = new FlowTable({ leg: () => {}, translation: () => {} });
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.constantFrom(...linkTypes),
        fc.nat(40),
        (frame, linkType, pad) => {
          // The frame sits inside a larger buffer whose tail is poison: offsets must stay below end.
          const buf = new Uint8Array(pad + frame.length + 64).fill(0xee);
          buf.set(frame, pad);
          decodePacket(p, buf, linkType, pad, pad + frame.length);
          expect(p.payloadOff + p.payloadLen).toBeLessThanOrEqual(pad + frame.length);
          table.add(p, 1, 0);
        },
      ),
      { numRuns: 3000 },
    );
    table.flush();
  });

  it("every prefix of valid frames decodes without throwing", () => {
    const p = new Packet();
    const frames = [
      bytes(
        eth(0x0800, [0x8100, 5]),
        ipv4(6, "10.0.0.1", "10.0.0.2", 24),
        tcp(1, 2, 2),
        [1, 2, 3, 4],
      ),
      bytes(
        eth(0x0800),
        ipv4(17, "10.0.0.1", "10.0.0.2", 8 + 30),
        udp(1, 4789, 30),
        [8, 0, 0, 0, 0, 0, 1, 0],
        eth(0x0800),
        [0x45, 0, 0, 20],
      ),
    ];
    // Frame 0's headers end at 18 (Ethernet + tag) + 20 (IPv4) + 20 (TCP) = 58 bytes: any shorter
    // prefix is a named truncation without ports, any longer one has its ports.
    for (let n = 0; n <= frames[0]!.length; n++) {
      decodePacket(p, frames[0]!.subarray(0, n), 1);
      expect([p.hasPorts, p.truncated && p.anomaly > 0], `prefix ${n}`).toEqual(
        n < 58 ? [false, true] : [true, false],
      );
    }
    for (let n = 0; n <= frames[1]!.length; n++) decodePacket(p, frames[1]!.subarray(0, n), 1);
  });
});
