#!/usr/bin/env node
/*
 * The lab's in-namespace helper process: `agent.js serve|send|dns|resolve …`, the same as
 * `svctrace lab serve` / `lab send` / `lab dns` / `lab resolve` but loading only the lab's own
 * code, so a pod starts fast and does not depend on the rest of the CLI. `lab run` starts it
 * with `ip netns exec`. The DNS commands load dns-packet, so they are imported only when used.
 */
import { sendTraffic } from "./send.js";
import { startServer } from "./serve.js";

function options(argv: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i] ?? "";
    const value = argv[i + 1];
    if (!key.startsWith("--") || value === undefined) throw new Error(`bad argument ${key}`);
    out.set(key.slice(2), [...(out.get(key.slice(2)) ?? []), value]);
  }
  return out;
}

function one(opts: Map<string, string[]>, key: string, fallback?: string): string {
  const v = opts.get(key)?.[0] ?? fallback;
  if (v === undefined) throw new Error(`missing --${key}`);
  return v;
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  const opts = options(rest);
  if (command === "serve") {
    const name = one(opts, "name");
    const tcp = (opts.get("tcp") ?? []).map(Number);
    const udp = (opts.get("udp") ?? []).map(Number);
    const server = await startServer({ name, tcp, udp, host: one(opts, "host", "0.0.0.0") });
    process.stdout.write(`ready ${name}\n`);
    await new Promise<void>((resolve) => {
      process.once("SIGTERM", resolve);
      process.once("SIGINT", resolve);
    });
    await server.close();
    return;
  }
  if (command === "send") {
    const [host, port] = one(opts, "to").split(":");
    const sport = one(opts, "sport", "random");
    const records = await sendTraffic({
      proto: one(opts, "proto", "tcp") === "udp" ? "udp" : "tcp",
      host: host ?? "",
      port: Number(port),
      count: Number(one(opts, "count", "1")),
      rate: Number(one(opts, "rate", "20")),
      sport: sport === "random" ? null : Number(sport),
      bind: opts.get("bind")?.[0] ?? null,
      timeoutMs: Number(one(opts, "timeout", "1000")),
      // A marker line before the records: `lab run` waits for it before its next step.
      onStart: () => process.stdout.write("#started\n"),
    });
    process.stdout.write(records.map((r) => `${JSON.stringify(r)}\n`).join(""));
    return;
  }
  if (command === "dns") {
    const { startDnsServer } = await import("./dns-server.js");
    const name = one(opts, "name");
    const server = await startDnsServer({
      name,
      host: one(opts, "host", "0.0.0.0"),
      port: Number(one(opts, "port", "53")),
      zone: one(opts, "zone"),
      // One line per answered query: the runner's ground truth of who asked and what was said.
      onQuery: (log) => process.stdout.write(`${JSON.stringify(log)}\n`),
    });
    process.stdout.write(`ready ${name} dns=${server.port}\n`);
    await new Promise<void>((resolve) => {
      process.once("SIGTERM", resolve);
      process.once("SIGINT", resolve);
    });
    await server.close();
    return;
  }
  if (command === "resolve") {
    const { resolveNames } = await import("./resolve.js");
    const [host, port] = one(opts, "server").split(":");
    const records = await resolveNames({
      server: host ?? "",
      port: Number(port ?? "53"),
      name: one(opts, "name"),
      qtype: one(opts, "type", "A") === "AAAA" ? "AAAA" : "A",
      count: Number(one(opts, "count", "1")),
      rate: Number(one(opts, "rate", "5")),
      bind: opts.get("bind")?.[0] ?? null,
      timeoutMs: Number(one(opts, "timeout", "1000")),
      onStart: () => process.stdout.write("#started\n"),
    });
    process.stdout.write(records.map((r) => `${JSON.stringify(r)}\n`).join(""));
    return;
  }
  throw new Error(`usage: agent.js serve|send|dns|resolve --option value …`);
}

main().catch((error: unknown) => {
  process.stderr.write(`lab agent: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
