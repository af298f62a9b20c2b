import type { Command } from "commander";
import { startDnsServer } from "../../lab/dns-server.js";
import { checkLabEnvironment } from "../../lab/exec.js";
import { resolveNames } from "../../lab/resolve.js";
import { LabInterrupted, runLab } from "../../lab/run.js";
import { loadScenario } from "../../lab/scenario.js";
import { sendTraffic } from "../../lab/send.js";
import { startServer } from "../../lab/serve.js";
import { teardown } from "../../lab/topology.js";
import { UsageError } from "../../util/errors.js";
import { parseAddrPort } from "../../util/ip.js";
import { ExitRequest } from "../exit.js";

function collect(value: string, previous: number[]): number[] {
  return [...previous, portArg(value)];
}

function portArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`not a port: ${value}`);
  return n;
}

function positive(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new UsageError(`${what} must be a positive number: ${value}`);
  return n;
}

export function registerLab(program: Command): void {
  const lab = program
    .command("lab")
    .description(
      "a small Kubernetes-like cluster in network namespaces, with real kube-proxy rules",
    );

  lab
    .command("run")
    .description("build the lab, play a scenario, and write a bundle with its ground truth")
    .argument("<scenario>", "scenario YAML file")
    .requiredOption("--out <dir>", "bundle directory to write (must not exist or be empty)")
    .option("--prefix <prefix>", "name prefix of the lab's network namespaces", "svt-")
    .option("--force", "replace an earlier bundle in --out (keeps README.md and scenario.yaml)")
    .option("--json", "print the run summary as JSON")
    .action(
      async (
        file: string,
        opts: { out: string; prefix: string; force?: boolean; json?: boolean },
      ) => {
        const scenario = loadScenario(file);
        const command = `svctrace lab run ${file} --out ${opts.out}${opts.prefix !== "svt-" ? ` --prefix ${opts.prefix}` : ""}`;
        let result: Awaited<ReturnType<typeof runLab>>;
        try {
          result = await runLab({
            scenario,
            out: opts.out,
            prefix: opts.prefix,
            command,
            force: opts.force ?? false,
            log: (line) => process.stderr.write(`lab: ${line}\n`),
          });
        } catch (error) {
          if (error instanceof LabInterrupted) {
            process.stderr.write(`svctrace: ${error.message}\n`);
            throw new ExitRequest(130);
          }
          throw error;
        }
        for (const warning of result.warnings)
          process.stderr.write(`svctrace: warning: ${warning}\n`);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(result)}\n`);
          return;
        }
        const packets = result.captures.map((c) => `${c.observer} ${c.stats.captured}`).join(", ");
        const dropped = result.captures.reduce((n, c) => n + c.stats.dropped, 0);
        process.stdout.write(
          `wrote ${result.out}: ${result.connections} connections (${result.answered} answered) in ${result.seconds.toFixed(1)} s\n` +
            `captured packets: ${packets}; dropped by kernel: ${dropped}\n`,
        );
      },
    );

  lab
    .command("down")
    .description("delete leftover lab namespaces (only those whose name starts with the prefix)")
    .option("--prefix <prefix>", "name prefix of the lab's network namespaces", "svt-")
    .action(async (opts: { prefix: string }) => {
      if (opts.prefix.length < 2) throw new UsageError("--prefix must be at least 2 characters");
      checkLabEnvironment();
      const removed = await teardown(opts.prefix);
      process.stdout.write(
        removed.length === 0
          ? `no namespaces with prefix ${opts.prefix}\n`
          : `removed ${removed.length} namespaces: ${removed.join(" ")}\n`,
      );
    });

  lab
    .command("serve")
    .description("answer TCP connections and UDP datagrams with the pod's name and the peer seen")
    .requiredOption("--name <pod>", "the pod name to answer with")
    .option("--tcp <port>", "TCP port to listen on (repeatable)", collect, [])
    .option("--udp <port>", "UDP port to listen on (repeatable)", collect, [])
    .option("--host <ip>", "address to listen on", "0.0.0.0")
    .action(async (opts: { name: string; tcp: number[]; udp: number[]; host: string }) => {
      if (opts.tcp.length === 0 && opts.udp.length === 0) {
        throw new UsageError("give at least one --tcp or --udp port");
      }
      const server = await startServer(opts);
      process.stdout.write(
        `ready ${opts.name} tcp=${opts.tcp.join(",")} udp=${opts.udp.join(",")}\n`,
      );
      await new Promise<void>((resolve) => {
        process.once("SIGTERM", resolve);
        process.once("SIGINT", resolve);
      });
      await server.close();
    });

  lab
    .command("dns")
    .description(
      "the cluster DNS pod's server: answer A queries from a zone file re-read for every query",
    )
    .requiredOption("--zone <file>", 'zone JSON: {"ttl": 5, "records": {"NAME": {"a": [IP]}}}')
    .option("--name <pod>", "the pod name to log with", "coredns")
    .option("--host <ip>", "address to listen on", "0.0.0.0")
    .option("--port <port>", "UDP port", "53")
    .action(async (opts: { zone: string; name: string; host: string; port: string }) => {
      const server = await startDnsServer({
        name: opts.name,
        host: opts.host,
        port: portArg(opts.port),
        zone: opts.zone,
        onQuery: (log) => process.stdout.write(`${JSON.stringify(log)}\n`),
      });
      process.stdout.write(`ready ${opts.name} dns=${server.port}\n`);
      await new Promise<void>((resolve) => {
        process.once("SIGTERM", resolve);
        process.once("SIGINT", resolve);
      });
      await server.close();
    });

  lab
    .command("resolve")
    .description("(used by lab run inside a client namespace) DNS queries; one JSON line each")
    .requiredOption("--server <ip:port>", "DNS server to ask (the kube-dns ClusterIP:53)")
    .requiredOption("--name <name>", "name to look up")
    .option("--type <type>", "A or AAAA", "A")
    .option("--count <n>", "queries, each from a new client port", "1")
    .option("--rate <n>", "per second", "5")
    .option("--bind <ip>", "client address to bind")
    .option("--timeout <ms>", "wait this long for an answer", "1000")
    .action(
      async (opts: {
        server: string;
        name: string;
        type: string;
        count: string;
        rate: string;
        bind?: string;
        timeout: string;
      }) => {
        const target = parseAddrPort(opts.server);
        if (target === null) throw new UsageError(`--server: not ip:port: ${opts.server}`);
        if (opts.type !== "A" && opts.type !== "AAAA") {
          throw new UsageError(`--type must be A or AAAA: ${opts.type}`);
        }
        const records = await resolveNames({
          server: target.ip,
          port: target.port,
          name: opts.name,
          qtype: opts.type,
          count: Math.round(positive(opts.count, "--count")),
          rate: positive(opts.rate, "--rate"),
          bind: opts.bind ?? null,
          timeoutMs: positive(opts.timeout, "--timeout"),
        });
        process.stdout.write(records.map((r) => `${JSON.stringify(r)}\n`).join(""));
      },
    );

  lab
    .command("send")
    .description("(used by lab run inside a client namespace) send requests; one JSON line each")
    .requiredOption("--to <ip:port>", "address to send to")
    .option("--proto <proto>", "tcp or udp", "tcp")
    .option("--count <n>", "connections or datagrams", "1")
    .option("--rate <n>", "per second", "20")
    .option("--sport <port>", "fixed client port, or random", "random")
    .option("--bind <ip>", "client address to bind")
    .option("--timeout <ms>", "wait this long for an answer", "1000")
    .action(
      async (opts: {
        to: string;
        proto: string;
        count: string;
        rate: string;
        sport: string;
        bind?: string;
        timeout: string;
      }) => {
        const target = parseAddrPort(opts.to);
        if (target === null) throw new UsageError(`--to: not ip:port: ${opts.to}`);
        if (opts.proto !== "tcp" && opts.proto !== "udp") {
          throw new UsageError(`--proto must be tcp or udp: ${opts.proto}`);
        }
        const records = await sendTraffic({
          proto: opts.proto,
          host: target.ip,
          port: target.port,
          count: Math.round(positive(opts.count, "--count")),
          rate: positive(opts.rate, "--rate"),
          sport: opts.sport === "random" ? null : portArg(opts.sport),
          bind: opts.bind ?? null,
          timeoutMs: positive(opts.timeout, "--timeout"),
        });
        process.stdout.write(records.map((r) => `${JSON.stringify(r)}\n`).join(""));
      },
    );
}
