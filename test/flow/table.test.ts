import { describe, expect, it } from "vitest";
import { decodePacket } from "../../src/decode/decoder.js";
import {
  DIR_IN,
  DIR_OUT,
  LINKTYPE_RAW,
  Packet,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
} from "../../src/decode/packet.js";
import { FlowTable, type FlowTableOptions } from "../../src/flow/table.js";
import type { LegRecord, TranslationRecord } from "../../src/flow/types.js";
import { bytes, ipv4, ipv6, tcp, udp } from "../decode/build.js";

const S = TCP_SYN;
const SA = TCP_SYN | TCP_ACK;
const A = TCP_ACK;
const FA = TCP_FIN | TCP_ACK;
const R = TCP_RST;
const RA = TCP_RST | TCP_ACK;

class Harness {
  legs: LegRecord[] = [];
  translations: TranslationRecord[] = [];
  table: FlowTable;
  private p = new Packet();
  constructor(options: FlowTableOptions = {}) {
    this.table = new FlowTable(
      { leg: (r) => this.legs.push(r), translation: (r) => this.translations.push(r) },
      options,
    );
  }
  /** A TCP segment `from` → `to` ("ip:port"), with flags, payload length, seq/ack. */
  tcp(
    ts: number,
    from: string,
    to: string,
    flags: number,
    opts: {
      len?: number;
      seq?: number;
      ack?: number;
      id?: number;
      dir?: number;
      ifId?: number;
    } = {},
  ) {
    const [sip, sport] = from.split(":");
    const [dip, dport] = to.split(":");
    const len = opts.len ?? 0;
    const frame = bytes(
      ipv4(6, sip!, dip!, 20 + len, { id: opts.id ?? 1 }),
      tcp(Number(sport), Number(dport), flags, opts.seq ?? 100, opts.ack ?? 0),
      new Uint8Array(len),
    );
    this.feed(frame, ts, opts.dir, opts.ifId);
  }
  udp(
    ts: number,
    from: string,
    to: string,
    payload: number[],
    opts: { id?: number; dir?: number; ifId?: number } = {},
  ) {
    const [sip, sport] = from.split(":");
    const [dip, dport] = to.split(":");
    const frame = bytes(
      ipv4(17, sip!, dip!, 8 + payload.length, { id: opts.id ?? 1 }),
      udp(Number(sport), Number(dport), payload.length),
      payload,
    );
    this.feed(frame, ts, opts.dir, opts.ifId);
  }
  private feed(frame: Uint8Array, ts: number, dir = 0, ifId = 0) {
    decodePacket(this.p, frame, LINKTYPE_RAW);
    this.p.direction = dir;
    this.table.add(this.p, ts, ifId);
  }
  done() {
    this.table.flush();
    return this;
  }
}

const C = "10.0.0.1:40000";
const V = "10.96.0.1:80";

function conn(flagsSeq: [boolean, number, number?][]): LegRecord {
  const h = new Harness();
  let t = 1;
  for (const [fromClient, flags, len] of flagsSeq) {
    h.tcp(t++ * 0.01, fromClient ? C : V, fromClient ? V : C, flags, { len: len ?? 0 });
  }
  h.done();
  expect(h.legs).toHaveLength(1);
  return h.legs[0]!;
}

describe("Zeek conn_state and history", () => {
  it.each([
    [
      "SF",
      "ShADdFf",
      [
        [true, S],
        [false, SA],
        [true, A],
        [true, A, 10],
        [false, A, 5],
        [true, FA],
        [false, FA],
        [true, A],
      ],
    ],
    [
      "S0",
      "S",
      [
        [true, S],
        [true, S],
      ],
    ],
    [
      "REJ",
      "Sr",
      [
        [true, S],
        [false, RA],
      ],
    ],
    [
      "S1",
      "ShAD",
      [
        [true, S],
        [false, SA],
        [true, A],
        [true, A, 3],
      ],
    ],
    [
      "RSTO",
      "ShAR",
      [
        [true, S],
        [false, SA],
        [true, A],
        [true, R],
      ],
    ],
    [
      "RSTR",
      "ShAr",
      [
        [true, S],
        [false, SA],
        [true, A],
        [false, R],
      ],
    ],
    [
      "RSTOS0",
      "SR",
      [
        [true, S],
        [true, R],
      ],
    ],
    [
      "SH",
      "SF",
      [
        [true, S],
        [true, FA],
      ],
    ],
    [
      "S2",
      "ShAF",
      [
        [true, S],
        [false, SA],
        [true, A],
        [true, FA],
      ],
    ],
    [
      "S3",
      "ShAf",
      [
        [true, S],
        [false, SA],
        [true, A],
        [false, FA],
      ],
    ],
    [
      "OTH",
      "Dd",
      [
        [true, A, 10],
        [false, A, 10],
      ],
    ],
  ] as [string, string, [boolean, number, number?][]][])("%s (%s)", (state, history, seq) => {
    const leg = conn(seq);
    expect(leg.connState).toBe(state);
    expect(leg.history).toBe(history);
  });

  it("a SYN-ACK seen first makes its receiver the originator (^)", () => {
    const leg = conn([
      [false, SA],
      [true, A],
    ]);
    expect([leg.origIp, leg.origPort, leg.respPort]).toEqual(["10.0.0.1", 40000, 80]);
    expect(leg.history.startsWith("^h")).toBe(true);
  });

  it("counts packets and payload bytes each way", () => {
    const leg = conn([
      [true, S],
      [false, SA],
      [true, A, 100],
      [false, A, 1000],
      [false, A, 1000],
    ]);
    expect([leg.origPackets, leg.origBytes, leg.respPackets, leg.respBytes]).toEqual([
      2, 100, 3, 2000,
    ]);
  });
});

describe("leg boundaries", () => {
  it("a new SYN after FIN or RST starts a new leg (port reuse)", () => {
    const h = new Harness();
    h.tcp(1, C, V, S);
    h.tcp(1.1, V, C, RA);
    h.tcp(2, C, V, S, { seq: 5000 });
    h.tcp(2.1, V, C, SA);
    h.done();
    expect(h.legs.map((l) => l.connState)).toEqual(["REJ", "S1"]);
  });

  it("a retransmitted SYN stays in its leg", () => {
    const h = new Harness();
    h.tcp(1, C, V, S);
    h.tcp(2, C, V, S);
    h.done();
    expect(h.legs).toHaveLength(1);
    expect(h.legs[0]!.origPackets).toBe(2);
  });

  it("UDP legs end after the idle timeout (default 120 s, configurable)", () => {
    const run = (options: FlowTableOptions) => {
      const h = new Harness(options);
      h.udp(0, "10.0.0.1:5000", "10.96.0.10:53", [1]);
      h.udp(130, "10.0.0.1:5000", "10.96.0.10:53", [2]);
      return h.done().legs.length;
    };
    expect(run({})).toBe(2);
    expect(run({ udpIdleTimeout: 200 })).toBe(1);
  });

  it("memory is bounded by live legs: idle legs are closed as capture time passes", () => {
    const h = new Harness({ udpIdleTimeout: 10 });
    for (let i = 0; i < 2000; i++)
      h.udp(i * 0.1, `10.0.${i >> 8}.${i & 255}:5000`, "10.96.0.10:53", [i & 255]);
    // 10 s of traffic at 10 legs/s live at once, give or take the one-second sweep.
    expect(h.table.liveLegs).toBeLessThanOrEqual(130);
    expect(h.legs.length).toBeGreaterThan(1800);
    h.done();
    expect(h.legs).toHaveLength(2000);
    expect(h.table.liveLegs).toBe(0);
  });

  it("closed TCP legs leave soon after their last packet", () => {
    const h = new Harness();
    h.tcp(0, C, V, S);
    h.tcp(0.1, V, C, RA);
    h.udp(10, "10.0.0.9:1", "10.0.0.8:2", [0]);
    expect(h.legs.map((l) => l.connState)).toEqual(["REJ"]);
  });
});

describe("translations in the packet stream", () => {
  it("pairs an ingress copy with its egress copy and orients replies as the request", () => {
    const h = new Harness();
    const P = "10.244.1.5:8080";
    // request: in on if 2 (client → VIP), out on if 3 (client → pod)
    h.tcp(1.0, C, V, S, { dir: DIR_IN, ifId: 2, id: 7, seq: 1 });
    h.tcp(1.00001, C, P, S, { dir: DIR_OUT, ifId: 3, id: 7, seq: 1 });
    // reply: in on if 3 (pod → client), out on if 2 (VIP → client)
    h.tcp(1.001, P, C, SA, { dir: DIR_IN, ifId: 3, id: 0, seq: 9, ack: 2 });
    h.tcp(1.00101, V, C, SA, { dir: DIR_OUT, ifId: 2, id: 0, seq: 9, ack: 2 });
    h.done();
    expect(h.translations).toHaveLength(1);
    expect(h.translations[0]).toMatchObject({
      interfaceIn: 2,
      interfaceOut: 3,
      kind: "dnat",
      packets: 2,
      pre: { srcIp: "10.0.0.1", srcPort: 40000, dstIp: "10.96.0.1", dstPort: 80 },
      post: { srcIp: "10.0.0.1", srcPort: 40000, dstIp: "10.244.1.5", dstPort: 8080 },
    });
  });

  it("a forwarded packet with an unchanged tuple is not a translation", () => {
    const h = new Harness();
    h.tcp(1, C, "10.244.1.5:8080", S, { dir: DIR_IN, ifId: 2, id: 7 });
    h.tcp(1.00001, C, "10.244.1.5:8080", S, { dir: DIR_OUT, ifId: 3, id: 7 });
    h.done();
    expect(h.translations).toEqual([]);
  });

  it("a different packet (other IP ID / payload) is not matched; a stale one neither", () => {
    const h = new Harness();
    h.udp(1, C, V, [1, 2, 3], { dir: DIR_IN, id: 1 });
    h.udp(1.00001, C, "10.244.1.5:53", [1, 2, 4], { dir: DIR_OUT, id: 1 });
    h.udp(2, C, V, [5], { dir: DIR_IN, id: 2 });
    h.udp(4, C, "10.244.1.5:53", [5], { dir: DIR_OUT, id: 2 });
    h.done();
    expect(h.translations).toEqual([]);
  });

  it("a translation that changes midway gives a new record (SNAT detected too)", () => {
    const h = new Harness();
    for (let i = 0; i < 6; i++) {
      const post = i < 3 ? "10.244.1.5:53" : "10.244.2.9:53";
      h.udp(i, C, V, [i], { dir: DIR_IN, ifId: 2, id: i + 1 });
      h.udp(i + 0.00001, "192.168.0.1:40000", post, [i], { dir: DIR_OUT, ifId: 3, id: i + 1 });
    }
    h.done();
    expect(h.translations.map((t) => [t.kind, t.post.dstIp, t.packets])).toEqual([
      ["both", "10.244.1.5", 3],
      ["both", "10.244.2.9", 3],
    ]);
  });

  it("without directions, only copies on distinct interfaces pair, the earlier being pre-NAT", () => {
    const h = new Harness();
    h.tcp(1.00001, C, "10.244.1.5:8080", S, { ifId: 1, id: 7 });
    h.tcp(1.0, C, V, S, { ifId: 0, id: 7 });
    h.tcp(2, C, V, S, { ifId: 0, id: 8, seq: 5 });
    h.tcp(2.00001, "10.0.0.1:40001", V, S, { ifId: 0, id: 8, seq: 5 });
    h.done();
    expect(
      h.translations.map((t) => [t.interfaceIn, t.interfaceOut, t.pre.dstIp, t.post.dstIp]),
    ).toEqual([[0, 1, "10.96.0.1", "10.244.1.5"]]);
  });
});

describe("IPv6 and tunnels", () => {
  it("IPv6 legs and translations (no IP ID: sequence numbers and payload tie the copies)", () => {
    const legs: LegRecord[] = [];
    const translations: TranslationRecord[] = [];
    const table = new FlowTable({
      leg: (r) => legs.push(r),
      translation: (r) => translations.push(r),
    });
    const p = new Packet();
    const feed = (ts: number, dstLast: number, dir: number, ifId: number) => {
      decodePacket(p, bytes(ipv6(6, 20, 1, dstLast), tcp(40000, 443, TCP_SYN, 77)), LINKTYPE_RAW);
      p.direction = dir;
      table.add(p, ts, ifId);
    };
    feed(1, 0x10, DIR_IN, 2);
    feed(1.00001, 0x20, DIR_OUT, 3);
    table.flush();
    expect(legs.map((l) => [l.interfaceId, l.origIp, l.respIp, l.connState])).toEqual([
      [2, "fd00::1", "fd00::10", "S0"],
      [3, "fd00::1", "fd00::20", "S0"],
    ]);
    expect(translations.map((t) => [t.kind, t.pre.dstIp, t.post.dstIp])).toEqual([
      ["dnat", "fd00::10", "fd00::20"],
    ]);
  });

  it("a VXLAN-encapsulated flow is a leg of the inner tuple with the outer addresses", () => {
    const legs: LegRecord[] = [];
    const table = new FlowTable({ leg: (r) => legs.push(r), translation: () => {} });
    const p = new Packet();
    const inner = bytes(
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 8, 0],
      ipv4(6, "10.244.1.5", "10.244.2.7", 20),
      tcp(45000, 8080, TCP_SYN),
    );
    const vx = bytes([0x08, 0, 0, 0, 0, 0, 1, 0], inner);
    decodePacket(
      p,
      bytes(ipv4(17, "192.168.0.1", "192.168.0.2", 8 + vx.length), udp(5555, 8472, vx.length), vx),
      LINKTYPE_RAW,
    );
    table.add(p, 1, 0);
    table.flush();
    expect(legs).toHaveLength(1);
    expect(legs[0]).toMatchObject({
      origIp: "10.244.1.5",
      respIp: "10.244.2.7",
      respPort: 8080,
      tunnel: { kind: "vxlan", outerSrc: "192.168.0.1", outerDst: "192.168.0.2", vni: 1 },
    });
  });
});
