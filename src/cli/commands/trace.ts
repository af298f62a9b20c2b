import { readFileSync } from "node:fs";
import type { Command } from "commander";
import {
  type Hook,
  ipsetLookup,
  type NodeContext,
  type SimPacket,
  type SimProtocol,
  Simulator,
} from "../../netfilter/index.js";
import { describeResult } from "../../netfilter/story.js";
import { parseIpsetSave } from "../../rules/ipset.js";
import { parseIptablesSave } from "../../rules/iptables-save.js";
import { InputError, UsageError } from "../../util/errors.js";
import { ipFamily } from "../../util/ip.js";

interface TraceCliOptions {
  rules: string;
  src: string;
  dst: string;
  dport: string;
  sport?: string;
  proto: string;
  localIp: string[];
  hook?: string;
  inIface?: string;
  outIface?: string;
  mark?: string;
  ctState: string;
  mode: string;
  affinity: string;
  ipsets?: string;
  json?: boolean;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw new InputError(
      `cannot read: ${(error as Error).message}`,
      { file: path },
      { cause: error },
    );
  }
}

function collectList(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function port(name: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new UsageError(`${name} ${JSON.stringify(text)}: expected a port number 0-65535`);
  }
  return Number(text);
}

export function registerTrace(program: Command): void {
  program
    .command("trace")
    .description(
      "trace one packet through an iptables-save dump: every outcome (DNAT endpoint, ACCEPT, DROP, REJECT) with its probability and rule path",
    )
    .requiredOption("--rules <file>", "iptables-save or ip6tables-save output of the node")
    .requiredOption("--src <ip>", "source address")
    .requiredOption("--dst <ip>", "destination address (the Service VIP, node IP, …)")
    .requiredOption("--dport <port>", "destination port")
    .option("--sport <port>", "source port", "40000")
    .option("--proto <proto>", "tcp, udp or sctp", "tcp")
    .option(
      "--local-ip <ip>",
      "an address of the node (repeat); decides addrtype LOCAL and local delivery",
      collectList,
      [],
    )
    .option("--hook <hook>", "prerouting or output (default: output when --src is a local address)")
    .option("--in-iface <name>", "input interface (unknown when omitted)")
    .option("--out-iface <name>", "output interface (unknown when omitted)")
    .option("--mark <mark>", "packet mark on entry, e.g. 0x4000")
    .option("--ct-state <state>", "NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED", "NEW")
    .option(
      "--mode <mode>",
      "kernel, or upstream (kube-proxy unit-test tracer semantics)",
      "kernel",
    )
    .option(
      "--affinity <state>",
      "unknown (keep both -m recent branches) or none (no client listed)",
      "unknown",
    )
    .option("--ipsets <file>", "`ipset save` output of the node, for -m set matches")
    .option("--json", "print one JSON object: {outcomes, unmodelled}")
    .action((opts: TraceCliOptions) => {
      const proto = opts.proto.toLowerCase();
      if (!["tcp", "udp", "sctp"].includes(proto)) {
        throw new UsageError(`--proto ${JSON.stringify(opts.proto)}: expected tcp, udp or sctp`);
      }
      for (const [name, ip] of [
        ["--src", opts.src],
        ["--dst", opts.dst],
        ...opts.localIp.map((ip) => ["--local-ip", ip]),
      ] as Array<[string, string]>) {
        if (ipFamily(ip) === null)
          throw new UsageError(`${name} ${JSON.stringify(ip)}: not an IP address`);
      }
      if (ipFamily(opts.src) !== ipFamily(opts.dst)) {
        throw new UsageError("--src and --dst must be the same address family");
      }
      let hook: Hook | undefined;
      if (opts.hook !== undefined) {
        if (opts.hook !== "prerouting" && opts.hook !== "output") {
          throw new UsageError(
            `--hook ${JSON.stringify(opts.hook)}: expected prerouting or output`,
          );
        }
        hook = opts.hook;
      }
      const ctState = opts.ctState.toUpperCase();
      if (!["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"].includes(ctState)) {
        throw new UsageError(
          `--ct-state ${JSON.stringify(opts.ctState)}: expected NEW, ESTABLISHED, RELATED, INVALID or UNTRACKED`,
        );
      }
      if (opts.mode !== "kernel" && opts.mode !== "upstream") {
        throw new UsageError(`--mode ${JSON.stringify(opts.mode)}: expected kernel or upstream`);
      }
      if (opts.affinity !== "unknown" && opts.affinity !== "none") {
        throw new UsageError(
          `--affinity ${JSON.stringify(opts.affinity)}: expected unknown or none`,
        );
      }
      let mark: number | undefined;
      if (opts.mark !== undefined) {
        mark = /^(0x[0-9a-fA-F]{1,8}|\d{1,10})$/.test(opts.mark) ? Number(opts.mark) : Number.NaN;
        if (!Number.isFinite(mark) || mark > 0xffffffff) {
          throw new UsageError(
            `--mark ${JSON.stringify(opts.mark)}: expected a number such as 0x4000`,
          );
        }
      }
      let text: string;
      try {
        text = readFileSync(opts.rules, "utf8");
      } catch (error) {
        throw new InputError(
          `cannot read: ${(error as Error).message}`,
          { file: opts.rules },
          { cause: error },
        );
      }
      const rules = parseIptablesSave(text, { source: opts.rules });
      const ctx: NodeContext = { localAddresses: opts.localIp };
      if (opts.ipsets !== undefined) {
        ctx.ipsets = ipsetLookup(parseIpsetSave(readText(opts.ipsets), { source: opts.ipsets }));
      }
      if (opts.affinity === "none") ctx.affinity = new Map();
      const packet: SimPacket = {
        proto: proto as SimProtocol,
        src: opts.src,
        dst: opts.dst,
        dport: port("--dport", opts.dport),
        sport: port("--sport", opts.sport ?? "40000"),
        ctState: ctState as SimPacket["ctState"] & string,
      };
      if (opts.inIface !== undefined) packet.inIface = opts.inIface;
      if (opts.outIface !== undefined) packet.outIface = opts.outIface;
      if (mark !== undefined) packet.mark = mark;
      const sim = new Simulator(rules, ctx);
      const result = sim.trace(packet, {
        mode: opts.mode,
        ...(hook !== undefined ? { hook } : {}),
      });
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      const first = result.outcomes[0];
      const where =
        first === undefined
          ? ""
          : ` entering at ${first.hook === "output" ? "OUTPUT" : "PREROUTING"}`;
      const lines = [
        `${proto} ${opts.src}:${packet.sport} → ${opts.dst}:${packet.dport}${where}${opts.mode === "upstream" ? " (upstream tracer semantics)" : ""}`,
      ];
      lines.push(describeResult(result));
      if (opts.localIp.length === 0) {
        lines.push("  note: no --local-ip given; only loopback addresses count as the node's own");
      }
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}
