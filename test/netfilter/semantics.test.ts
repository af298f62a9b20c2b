import { describe, expect, it } from "vitest";
import { ipsetLookup, type SimPacket, Simulator } from "../../src/netfilter/index.js";
import { parseIpsetSave } from "../../src/rules/ipset.js";
import { parseIptablesSave } from "../../src/rules/iptables-save.js";

function sim(text: string, local: string[] = ["192.168.0.2"], extra = {}): Simulator {
  return new Simulator(parseIptablesSave(text, { source: "inline" }), {
    localAddresses: local,
    ...extra,
  });
}

const tcp = (
  src: string,
  dst: string,
  dport: number,
  more: Partial<SimPacket> = {},
): SimPacket => ({
  proto: "tcp",
  src,
  dst,
  dport,
  ...more,
});

function table(name: string, chains: string[], rules: string[]): string {
  return [`*${name}`, ...chains, ...rules, "COMMIT", ""].join("\n");
}

const NAT = [
  ":PREROUTING ACCEPT [0:0]",
  ":INPUT ACCEPT [0:0]",
  ":OUTPUT ACCEPT [0:0]",
  ":POSTROUTING ACCEPT [0:0]",
];
const FILTER = [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"];

describe("targets and matches", () => {
  it("MARK forms compose as the kernel does, and KUBE-POSTROUTING masquerades on the bit", () => {
    const s = sim(
      table(
        "nat",
        [...NAT, ":M - [0:0]"],
        [
          "-A PREROUTING -j M",
          "-A M -j MARK --set-xmark 0x4000/0x4000",
          "-A M -j MARK --or-mark 0x1",
          "-A M -j MARK --and-mark 0xffff",
          "-A M -j MARK --xor-mark 0x1",
          "-A M -j MARK --set-mark 0x20000/0x30000",
          "-A POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
          "-A POSTROUTING -j MASQUERADE",
        ],
      ),
    );
    const [o] = s.trace(tcp("10.0.0.1", "10.0.0.2", 80)).outcomes;
    expect(o?.mark).toBe(0x4000 | 0x20000);
    expect(o?.masquerade).toBe(true);
    const none = s.trace(tcp("10.0.0.1", "10.0.0.2", 80, { mark: 0x8000 }));
    expect(none.outcomes[0]?.mark).toBe(0xc000 | 0x20000);
  });

  it("goto does not return to the chain that went there; jump does", () => {
    const s = sim(
      table(
        "filter",
        [...FILTER, ":A - [0:0]", ":B - [0:0]"],
        [
          "-A FORWARD -p tcp --dport 1 -g A",
          "-A FORWARD -p tcp --dport 2 -j A",
          "-A FORWARD -j DROP",
          "-A A -j B",
          "-A B -j RETURN",
        ],
      ),
    );
    expect(s.trace(tcp("10.0.0.1", "10.0.0.2", 1)).outcomes[0]).toMatchObject({
      verdict: "ACCEPT",
      decidedBy: "policy",
    });
    expect(s.trace(tcp("10.0.0.1", "10.0.0.2", 2)).outcomes[0]).toMatchObject({
      verdict: "DROP",
      decidedBy: "rule",
    });
  });

  it("DNAT ranges split evenly; IPv6 [addr]:port; port-only DNAT keeps the address", () => {
    const s = sim(
      table("nat", NAT, [
        "-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.1.0.1-10.1.0.4:8080",
        "-A PREROUTING -p tcp --dport 81 -j DNAT --to-destination :9090",
      ]),
    );
    const r = s.trace(tcp("10.0.0.1", "10.0.0.2", 80));
    expect(r.outcomes.map((o) => o.endpoint)).toEqual([
      "10.1.0.1:8080",
      "10.1.0.2:8080",
      "10.1.0.3:8080",
      "10.1.0.4:8080",
    ]);
    for (const o of r.outcomes) expect(o.probability).toBeCloseTo(0.25, 12);
    expect(s.trace(tcp("10.0.0.1", "10.0.0.2", 81)).outcomes[0]?.endpoint).toBe("10.0.0.2:9090");
    const v6 = new Simulator(
      parseIptablesSave(
        table("nat", NAT, [
          "-A PREROUTING -d fd00::10/128 -p tcp --dport 80 -j DNAT --to-destination [fd00::1:5]:8080",
        ]),
        { source: "v6", family: "ipv6" },
      ),
      { localAddresses: [] },
    );
    expect(v6.trace(tcp("fd00::99", "fd00::10", 80)).outcomes[0]?.endpoint).toBe(
      "[fd00::1:5]:8080",
    );
  });

  it("the nat table sees only NEW connections", () => {
    const s = sim(table("nat", NAT, ["-A PREROUTING -p tcp -j DNAT --to-destination 10.1.0.1:80"]));
    expect(
      s.trace(tcp("10.0.0.1", "10.0.0.2", 80, { ctState: "ESTABLISHED" })).outcomes[0]?.verdict,
    ).toBe("ACCEPT");
    expect(s.trace(tcp("10.0.0.1", "10.0.0.2", 80)).outcomes[0]?.verdict).toBe("DNAT");
  });

  it("--ctstate DNAT becomes true after translation (KUBE-FIREWALL's localnet rule)", () => {
    const text =
      table("nat", NAT, [
        "-A OUTPUT -d 127.0.0.1/32 -p tcp --dport 3001 -j DNAT --to-destination 10.1.0.1:80",
      ]) +
      table(
        "filter",
        [...FILTER],
        [
          "-A OUTPUT -d 10.1.0.1/32 -m conntrack ! --ctstate DNAT -j DROP",
          "-A INPUT -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        ],
      );
    const s = sim(text);
    expect(s.trace(tcp("127.0.0.1", "127.0.0.1", 3001)).outcomes[0]?.verdict).toBe("DNAT");
    // Straight to the endpoint, no DNAT: the first filter rule drops it.
    expect(s.trace(tcp("192.168.0.2", "10.1.0.1", 80)).outcomes[0]?.verdict).toBe("DROP");
    // A martian to 127/8 from outside is dropped in INPUT.
    expect(
      s.trace(tcp("10.9.9.9", "127.0.0.1", 22, { inIface: "eth0" })).outcomes[0],
    ).toMatchObject({
      verdict: "DROP",
      delivery: "local",
    });
  });

  it("an unknown interface keeps both branches, marked as assumptions", () => {
    const s = sim(table("filter", FILTER, ["-A FORWARD -i eth+ -o cni0 -j DROP"]));
    const r = s.trace(tcp("10.0.0.1", "10.0.0.2", 80));
    expect(r.outcomes.map((o) => [o.verdict, o.probability])).toEqual([
      ["DROP", 0.5],
      ["ACCEPT", 0.5],
    ]);
    expect(r.outcomes[0]?.assumed[0]).toMatch(/input interface eth\+/);
    const known = s.trace(tcp("10.0.0.1", "10.0.0.2", 80, { inIface: "eth1", outIface: "cni0" }));
    expect(known.outcomes).toHaveLength(1);
    expect(known.outcomes[0]?.verdict).toBe("DROP");
  });

  it("unmodelled matches and targets are named, never silently decided", () => {
    const s = sim(
      table(
        "filter",
        [...FILTER, ":X - [0:0]"],
        [
          "-A FORWARD -m physdev --physdev-is-bridged -j DROP",
          "-A FORWARD -j NFQUEUE --queue-num 3",
        ],
      ),
    );
    const r = s.trace(tcp("10.0.0.1", "10.0.0.2", 80));
    expect(r.unmodelled.map((u) => u.what).sort()).toEqual(["NFQUEUE", "physdev"]);
    expect(r.outcomes.every((o) => o.unmodelled)).toBe(true);
    expect(r.outcomes.map((o) => o.verdict).sort()).toEqual(["ACCEPT", "DROP"]);
  });

  it("recent: given affinity state decides; none given keeps both, marked", () => {
    const text = table(
      "nat",
      [...NAT, ":S - [0:0]"],
      [
        "-A PREROUTING -d 172.30.0.1/32 -j S",
        "-A S -m recent --name SEP-B --rcheck --seconds 10800 --reap --rsource -j DNAT --to-destination 10.1.0.2:80",
        "-A S -j DNAT --to-destination 10.1.0.1:80",
      ],
    );
    const unknown = sim(text).trace(tcp("10.0.0.7", "172.30.0.1", 80));
    expect(unknown.outcomes.map((o) => [o.endpoint, o.probability])).toEqual([
      ["10.1.0.2:80", 0.5],
      ["10.1.0.1:80", 0.5],
    ]);
    expect(unknown.outcomes[0]?.assumed[0]).toMatch(/recent SEP-B/);
    const listed = sim(text, [], { affinity: new Map([["SEP-B", new Set(["10.0.0.7"])]]) });
    expect(listed.trace(tcp("10.0.0.7", "172.30.0.1", 80)).outcomes.map((o) => o.endpoint)).toEqual(
      ["10.1.0.2:80"],
    );
    expect(listed.trace(tcp("10.0.0.8", "172.30.0.1", 80)).outcomes.map((o) => o.endpoint)).toEqual(
      ["10.1.0.1:80"],
    );
  });

  it("-m set uses the node's ipsets; an unknown set keeps both branches", () => {
    const text = table("filter", FILTER, [
      "-A FORWARD -m set --match-set BLOCK src,dst -j REJECT --reject-with icmp-host-prohibited",
    ]);
    const sets = parseIpsetSave(
      ["create BLOCK hash:ip,port family inet", "add BLOCK 10.0.0.66,tcp:443", ""].join("\n"),
      { source: "ipset" },
    );
    const s = sim(text, [], { ipsets: ipsetLookup(sets) });
    expect(s.trace(tcp("10.0.0.66", "10.0.0.2", 443)).outcomes[0]).toMatchObject({
      verdict: "REJECT",
      rejectWith: "icmp-host-prohibited",
    });
    expect(s.trace(tcp("10.0.0.66", "10.0.0.2", 80)).outcomes[0]?.verdict).toBe("ACCEPT");
    expect(sim(text).trace(tcp("10.0.0.66", "10.0.0.2", 443)).outcomes).toHaveLength(2);
  });

  it("multiport, port ranges, tcp flags and statistic nth", () => {
    const s = sim(
      table("filter", FILTER, [
        "-A FORWARD -p tcp -m tcp --tcp-flags SYN,ACK,RST,FIN ACK -j REJECT",
        "-A FORWARD -p tcp -m multiport --dports 22,8000:8100 -j DROP",
        "-A FORWARD -p udp -m statistic --mode nth --every 4 --packet 0 -j DROP",
      ]),
    );
    expect(s.trace(tcp("10.0.0.1", "10.0.0.2", 8050)).outcomes[0]?.verdict).toBe("DROP");
    expect(s.trace(tcp("10.0.0.1", "10.0.0.2", 8101)).outcomes[0]?.verdict).toBe("ACCEPT");
    expect(
      s.trace(tcp("10.0.0.1", "10.0.0.2", 80, { ctState: "ESTABLISHED" })).outcomes[0]?.verdict,
    ).toBe("REJECT");
    const udp = s.trace({ proto: "udp", src: "10.0.0.1", dst: "10.0.0.2", dport: 53 });
    expect(udp.outcomes.map((o) => [o.verdict, o.probability])).toEqual([
      ["DROP", 0.25],
      ["ACCEPT", 0.75],
    ]);
  });

  it("CONNMARK save and restore carry marks between packet and connection", () => {
    const s = sim(
      table(
        "mangle",
        [
          ":PREROUTING ACCEPT [0:0]",
          ":INPUT ACCEPT [0:0]",
          ":FORWARD ACCEPT [0:0]",
          ":OUTPUT ACCEPT [0:0]",
          ":POSTROUTING ACCEPT [0:0]",
        ],
        [
          "-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff",
          "-A PREROUTING -m mark --mark 0x7/0xff -j MARK --or-mark 0x100",
          "-A POSTROUTING -j CONNMARK --save-mark --nfmask 0xffff --ctmask 0xffff",
        ],
      ),
    );
    const o = s.trace(tcp("10.0.0.1", "10.0.0.2", 80, { ctMark: 0x7 })).outcomes[0];
    expect(o?.mark).toBe(0x107);
  });

  it("a DROP policy decides when no rule does", () => {
    const s = sim(
      table(
        "filter",
        [":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"],
        ["-A INPUT -p tcp --dport 22 -j ACCEPT"],
      ),
    );
    expect(s.trace(tcp("10.0.0.1", "192.168.0.2", 22)).outcomes[0]).toMatchObject({
      verdict: "ACCEPT",
      decidedBy: "rule",
      delivery: "local",
    });
    expect(s.trace(tcp("10.0.0.1", "192.168.0.2", 23)).outcomes[0]).toMatchObject({
      verdict: "DROP",
      decidedBy: "policy",
    });
  });

  it("REDIRECT in OUTPUT goes to loopback", () => {
    const s = sim(table("nat", NAT, ["-A OUTPUT -p tcp --dport 80 -j REDIRECT --to-ports 15001"]));
    expect(s.trace(tcp("192.168.0.2", "10.0.0.9", 80)).outcomes[0]?.endpoint).toBe(
      "127.0.0.1:15001",
    );
  });
});

describe("limits", () => {
  it("a jump loop is refused as the kernel refuses it, naming the chains and line", () => {
    const text = table(
      "filter",
      [...FILTER, ":A - [0:0]", ":B - [0:0]"],
      ["-A FORWARD -j A", "-A A -j B", "-A B -g A"],
    );
    expect(() => sim(text)).toThrow("inline: line 9: chain loop filter: A → B → A");
  });

  it("runaway branching stops with an error instead of exhausting memory", () => {
    const rules = Array.from(
      { length: 30 },
      (_, i) =>
        `-A FORWARD -m statistic --mode random --probability 0.5 -j MARK --set-mark ${i + 1}`,
    );
    const s = sim(table("filter", FILTER, rules));
    expect(() => s.trace(tcp("10.0.0.1", "10.0.0.2", 80), { maxOutcomes: 1000 })).toThrow(
      /more than 1000 outcomes/,
    );
  });
});
