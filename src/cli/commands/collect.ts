import type { Command } from "commander";
import { type CollectResult, collect, parseDurationSeconds } from "../../lab/collect.js";
import { EnvironmentError, UsageError } from "../../util/errors.js";

interface CollectCliOptions {
  node?: string;
  duration: string;
  out: string;
  iface: string;
  filter?: string;
  capture: "auto" | "tcpdump" | "live" | "none";
  inventory: boolean;
  json?: boolean;
}

function describe(r: CollectResult): string {
  const lines = [`collected ${r.files.length} files into ${r.outDir} (${r.start} → ${r.end})`];
  const c = r.capture;
  if (c.engine === "none") lines.push("  capture: none");
  else {
    const dropped = c.droppedByKernel === null ? "" : `, ${c.droppedByKernel} dropped by kernel`;
    lines.push(
      `  capture: ${c.file ?? "(no file)"} by ${c.engine}, ${c.packets ?? "?"} packets${dropped}`,
    );
  }
  for (const f of r.files) lines.push(`  ${f}`);
  if (r.missing.length > 0) lines.push(`missing tools: ${r.missing.join(", ")}`);
  for (const p of r.problems) lines.push(`problem: ${p}`);
  return `${lines.join("\n")}\n`;
}

export function registerCollect(program: Command): void {
  program
    .command("collect")
    .description(
      "gather a node's bundle (capture, iptables/nft dumps and conntrack at start and end, addresses, kubectl inventory) into a directory; run as root on the node",
    )
    .option("--node <name>", "node name used in the bundle (default: this host's name)")
    .option("--duration <time>", "how long to capture: 60s, 5m, 1h (Ctrl-C ends early)", "60s")
    .requiredOption("--out <dir>", "bundle directory to create or fill")
    .option("--iface <name>", "capture interface", "any")
    .option("--filter <bpf>", "BPF filter for the capture")
    .option(
      "--capture <engine>",
      "auto (tcpdump, else svctrace's live capture), tcpdump, live, none",
      "auto",
    )
    .option("--no-inventory", "do not run kubectl")
    .option("--json", "print the result as JSON")
    .action(async (opts: CollectCliOptions) => {
      const seconds = parseDurationSeconds(opts.duration);
      if (seconds === null)
        throw new UsageError(
          `--duration ${JSON.stringify(opts.duration)}: expected e.g. 60s, 5m, 1h`,
        );
      if (!["auto", "tcpdump", "live", "none"].includes(opts.capture)) {
        throw new UsageError(
          `--capture ${JSON.stringify(opts.capture)}: expected auto, tcpdump, live or none`,
        );
      }
      if (process.getuid?.() !== 0) {
        throw new EnvironmentError(
          "svctrace collect must run as root (capture, iptables-save, conntrack)",
        );
      }
      const { hostname } = await import("node:os");
      const controller = new AbortController();
      const onSigint = () => {
        process.stderr.write("svctrace collect: stopping early, taking the end-of-run dumps…\n");
        controller.abort();
      };
      process.once("SIGINT", onSigint);
      try {
        const result = await collect({
          node: opts.node ?? hostname().split(".")[0] ?? "node",
          durationSeconds: seconds,
          outDir: opts.out,
          iface: opts.iface,
          ...(opts.filter !== undefined ? { filter: opts.filter } : {}),
          capture: opts.capture,
          inventory: opts.inventory,
          signal: controller.signal,
          onLog: (line) => {
            if (!opts.json) process.stderr.write(`${line}\n`);
          },
        });
        if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
        else process.stdout.write(describe(result));
        if (result.missing.length > 0 || result.problems.length > 0) {
          process.stderr.write(
            `svctrace collect: ${result.missing.length} tools missing, ${result.problems.length} problems (see ${opts.out}/collect.log)\n`,
          );
        }
      } finally {
        process.removeListener("SIGINT", onSigint);
      }
    });
}
