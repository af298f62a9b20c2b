import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileRuleSet, Simulator } from "../../src/netfilter/index.js";
import { parseIptablesSave } from "../../src/rules/iptables-save.js";
import { InputError } from "../../src/util/errors.js";

/** A kube-proxy-like nat table: KUBE-SERVICES → KUBE-SVC (statistic, recent) → KUBE-SEP. */
const serviceArb = fc.record({
  endpoints: fc.integer({ min: 0, max: 5 }),
  // true: kube-proxy's 1/n, 1/(n-1)…; false: arbitrary probabilities (a broken generator).
  fair: fc.boolean(),
  probs: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 5, maxLength: 5 }),
  affinity: fc.boolean(),
  nth: fc.boolean(),
  masqAll: fc.boolean(),
  unmodelled: fc.boolean(),
});

type ServiceSpec = typeof serviceArb extends fc.Arbitrary<infer T> ? T : never;

function ruleSet(services: ServiceSpec[]): string {
  const chains = [":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"];
  const rules = [
    "-A PREROUTING -j KUBE-SERVICES",
    "-A OUTPUT -j KUBE-SERVICES",
    "-A POSTROUTING -j KUBE-POSTROUTING",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
    "-A KUBE-POSTROUTING -j MASQUERADE",
    "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
  ];
  chains.push(":KUBE-SERVICES - [0:0]", ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]");
  const filter: string[] = [];
  services.forEach((s, i) => {
    const vip = `172.30.${i >> 8}.${i & 255}`;
    const svc = `KUBE-SVC-${i}`;
    if (s.endpoints === 0) {
      filter.push(`-A FORWARD -d ${vip}/32 -p tcp -m tcp --dport 80 -j REJECT`);
      return;
    }
    chains.push(`:${svc} - [0:0]`);
    rules.push(`-A KUBE-SERVICES -d ${vip}/32 -p tcp -m tcp --dport 80 -j ${svc}`);
    if (s.masqAll) rules.push(`-A ${svc} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ`);
    if (s.unmodelled) rules.push(`-A ${svc} -m physdev --physdev-is-bridged -j KUBE-MARK-MASQ`);
    for (let e = 0; e < s.endpoints; e++) {
      const sep = `KUBE-SEP-${i}-${e}`;
      chains.push(`:${sep} - [0:0]`);
      rules.push(`-A ${sep} -s 10.180.${i & 255}.${e + 1}/32 -j KUBE-MARK-MASQ`);
      rules.push(`-A ${sep} -p tcp -m tcp -j DNAT --to-destination 10.180.${i & 255}.${e + 1}:80`);
      if (s.affinity) {
        rules.push(
          `-A ${svc} -m recent --rcheck --seconds 10800 --reap --name ${sep} --mask 255.255.255.255 --rsource -j ${sep}`,
        );
      }
    }
    for (let e = 0; e < s.endpoints; e++) {
      const sep = `KUBE-SEP-${i}-${e}`;
      const left = s.endpoints - e;
      if (left === 1) rules.push(`-A ${svc} -j ${sep}`);
      else if (s.nth)
        rules.push(`-A ${svc} -m statistic --mode nth --every ${left} --packet 0 -j ${sep}`);
      else {
        const p = s.fair ? 1 / left : (s.probs[e] ?? 0.5);
        rules.push(`-A ${svc} -m statistic --mode random --probability ${p.toFixed(11)} -j ${sep}`);
      }
    }
  });
  return [
    "*nat",
    ...chains,
    ...rules,
    "COMMIT",
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD ACCEPT [0:0]",
    ":OUTPUT ACCEPT [0:0]",
    ...filter,
    "COMMIT",
    "",
  ].join("\n");
}

describe("simulator properties", () => {
  it("outcome probabilities sum to 1 for random kube-proxy-like rule sets", () => {
    fc.assert(
      fc.property(
        fc.array(serviceArb, { minLength: 1, maxLength: 20 }),
        fc.nat(),
        fc.constantFrom<"kernel" | "upstream">("kernel", "upstream"),
        (services, pick, mode) => {
          const rs = parseIptablesSave(ruleSet(services), { source: "prop" });
          const sim = new Simulator(rs, { localAddresses: ["192.168.0.2"] });
          const i = pick % services.length;
          const r = sim.trace(
            { proto: "tcp", src: "10.0.0.9", dst: `172.30.${i >> 8}.${i & 255}`, dport: 80 },
            { mode },
          );
          const sum = r.outcomes.reduce((a, o) => a + o.probability, 0);
          if (mode === "kernel") {
            expect(Math.abs(sum - 1)).toBeLessThan(1e-9);
            for (const o of r.outcomes) expect(o.probability).toBeGreaterThan(0);
          }
          const s = services[i]!;
          // (Upstream's tracer only walks the KUBE-* filter chains, not FORWARD itself.)
          if (s.endpoints === 0 && mode === "kernel") {
            expect(r.outcomes.map((o) => o.verdict)).toEqual(["REJECT"]);
          } else if (mode === "kernel" && !s.unmodelled) {
            // Every endpoint that can be chosen is a DNAT outcome, nothing else is.
            for (const o of r.outcomes)
              expect(o.verdict === "DNAT" || o.verdict === "ACCEPT").toBe(true);
          }
          if (s.unmodelled && s.endpoints > 0 && mode === "kernel") {
            expect(r.unmodelled.map((u) => u.what)).toContain("physdev");
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("dispatch indexes never change the result", () => {
    // Long chains mixing rules the index can narrow (exact -d and/or --dport) with rules it
    // cannot (CIDRs, negations, no address), in random order.
    const ruleArb = fc.record({
      kind: fc.constantFrom("dst-port", "dst", "port", "cidr", "negated", "any"),
      host: fc.integer({ min: 1, max: 6 }),
      port: fc.constantFrom(80, 443, 8080),
      target: fc.constantFrom("ACCEPT", "DROP", "REJECT", "RETURN", "MARK"),
    });
    let indexed = 0;
    fc.assert(
      fc.property(
        fc.array(ruleArb, { minLength: 16, maxLength: 60 }),
        fc.integer({ min: 1, max: 7 }),
        fc.constantFrom(80, 443, 8080, 22),
        (chainRules, host, port) => {
          const lines = chainRules.map((r) => {
            const target = r.target === "MARK" ? "MARK --set-xmark 0x1/0x1" : r.target;
            switch (r.kind) {
              case "dst-port":
                return `-A T -d 10.1.0.${r.host}/32 -p tcp -m tcp --dport ${r.port} -j ${target}`;
              case "dst":
                return `-A T -d 10.1.0.${r.host}/32 -j ${target}`;
              case "port":
                return `-A T -p tcp -m tcp --dport ${r.port} -j ${target}`;
              case "cidr":
                return `-A T -d 10.1.0.0/29 -p tcp -m tcp --dport ${r.port} -j ${target}`;
              case "negated":
                return `-A T ! -d 10.1.0.${r.host}/32 -j ${target}`;
              default:
                return `-A T -m mark --mark 0x1/0x1 -j ${target}`;
            }
          });
          const text = [
            "*filter",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD ACCEPT [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            ":T - [0:0]",
            "-A FORWARD -j T",
            ...lines,
            "COMMIT",
            "",
          ].join("\n");
          const rs = parseIptablesSave(text, { source: "prop" });
          const packet = {
            proto: "tcp" as const,
            src: "10.9.0.1",
            dst: `10.1.0.${host}`,
            dport: port,
          };
          const ctx = { localAddresses: [] };
          const compiled = compileRuleSet(rs);
          if (compiled.tables.get("filter")?.get("T")?.index != null) indexed++;
          const withIndex = new Simulator(compiled, ctx).trace(packet);
          const without = new Simulator(compileRuleSet(rs, { dispatchIndex: false }), ctx).trace(
            packet,
          );
          expect(withIndex).toEqual(without);
        },
      ),
      { numRuns: 300 },
    );
    // The property means something only if most chains did get an index.
    expect(indexed).toBeGreaterThan(150);
  });
});

describe("simulator robustness", () => {
  // Rules assembled from plausible and implausible pieces; whatever the parser accepts, the
  // simulator must compile and trace without throwing, and still account for every branch.
  const piece = fc.constantFrom(
    "-s 10.0.0.0/8",
    "! -s 10.1.2.3",
    "-d 172.30.0.1/32",
    "-d 999.1.1.1",
    "-p tcp",
    "-p udp",
    "-p 47",
    "-i eth+",
    "! -o lo",
    "-m tcp --dport 80",
    "-m tcp --dport 1000:2000",
    "-m udp --sport 53",
    "-m multiport --dports 80,443,8000:9000",
    "-m addrtype --dst-type LOCAL",
    "-m addrtype ! --src-type LOCAL --limit-iface-in",
    "-m statistic --mode random --probability 0.25",
    "-m statistic --mode random --probability 7",
    "-m statistic --mode nth --every 3 --packet 1",
    "-m recent --name X --rcheck --seconds 60",
    "-m mark --mark 0x4000/0x4000",
    "-m mark ! --mark 0x1",
    "-m conntrack --ctstate NEW,DNAT",
    "-m conntrack ! --ctstatus ASSURED",
    "-m state --state ESTABLISHED",
    '-m comment --comment "a b c"',
    "-m set --match-set S src,dst",
    "-m physdev --physdev-in veth0",
    "-m owner --uid-owner 0",
    "-m iprange --src-range 10.0.0.1-10.0.0.9",
    "-m tcp --tcp-flags SYN,ACK SYN",
    "-m icmp --icmp-type echo-request",
    "-m pkttype --pkt-type unicast",
    "-m limit --limit 5/sec",
  );
  const target = fc.constantFrom(
    "-j ACCEPT",
    "-j DROP",
    "-j REJECT --reject-with tcp-reset",
    "-j RETURN",
    "-j C1",
    "-g C2",
    "-j DNAT --to-destination 10.9.0.1:8080",
    "-j DNAT --to-destination 10.9.0.1-10.9.0.3",
    "-j DNAT --to-destination nonsense",
    "-j SNAT --to-source 192.0.2.1",
    "-j MASQUERADE --random-fully",
    "-j MARK --set-xmark 0x4000/0x4000",
    "-j MARK --set-mark 0xzz",
    "-j CONNMARK --save-mark",
    "-j LOG --log-prefix x",
    "-j NFQUEUE --queue-num 1",
    "-j TPROXY --on-port 1",
    "-j NOSUCHCHAIN",
    "",
  );
  const rule = fc.tuple(
    fc.constantFrom("PREROUTING", "OUTPUT", "POSTROUTING", "C1", "C2"),
    fc.array(piece, { maxLength: 4 }),
    target,
  );
  it("any rule set the parser accepts traces without throwing; probabilities sum to 1", () => {
    let traced = 0;
    fc.assert(
      fc.property(fc.array(rule, { maxLength: 25 }), fc.boolean(), (rules, fromNode) => {
        const lines = rules.map(([chain, parts, tg]) => `-A ${chain} ${parts.join(" ")} ${tg}`);
        const text = [
          "*nat",
          ":PREROUTING ACCEPT [0:0]",
          ":INPUT ACCEPT [0:0]",
          ":OUTPUT ACCEPT [0:0]",
          ":POSTROUTING ACCEPT [0:0]",
          ":C1 - [0:0]",
          ":C2 - [0:0]",
          ...lines,
          "COMMIT",
          "",
        ].join("\n");
        let rs: ReturnType<typeof parseIptablesSave>;
        try {
          rs = parseIptablesSave(text, { source: "fuzz" });
        } catch {
          return; // the parser's own property tests cover what it refuses
        }
        let r: ReturnType<Simulator["trace"]>;
        try {
          const sim = new Simulator(rs, { localAddresses: ["192.168.0.2"] });
          r = sim.trace({
            proto: "tcp",
            src: fromNode ? "192.168.0.2" : "10.0.0.5",
            dst: "172.30.0.1",
            dport: 80,
          });
        } catch (error) {
          // Chains that loop (C1 → C2 → C1) are refused by the kernel; we say so, never hang.
          expect(error).toBeInstanceOf(InputError);
          expect(String(error)).toMatch(/chain loop/);
          return;
        }
        const sum = r.outcomes.reduce((a, o) => a + o.probability, 0);
        expect(Math.abs(sum - 1)).toBeLessThan(1e-9);
        traced++;
      }),
      { numRuns: 300 },
    );
    expect(traced).toBeGreaterThan(100);
  });
});
