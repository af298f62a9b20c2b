/**
 * `npm run bench`: generate a capture of ≥2 M packets / ≥200 k TCP connections through a Service
 * VIP, then time `svctrace ingest` end to end against the tools users compare it with, and the
 * rule-set benchmarks when bench/rules.ts is present. Prints packets/s, ratios and peak RSS.
 *
 * Environment: BENCH_CONNECTIONS (default 200000),
 * BENCH_SKIP=tshark,tcpdump,pcap-parser,rules,analyze.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateCapture } from "./generate.js";

export interface BenchResult {
  name: string;
  /** What one "op" is: packets, rules, lookups… */
  unit: string;
  ops: number;
  seconds: number;
  /** Peak resident set in bytes, when measured. */
  peakRss: number | null;
  /** User + system CPU seconds of the process, when measured: unlike wall time, not inflated by other load. */
  cpuSeconds?: number | null;
  note?: string;
}

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
  return dir;
}

const root = packageRoot();
const out = join(root, "bench", "out");
const GENERATOR_VERSION = 2;

function have(tool: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).status === 0;
}

/** Run a command under /usr/bin/time -v: wall seconds, CPU seconds and peak RSS of the child. */
function timed(
  cmd: string,
  args: string[],
): {
  seconds: number;
  peakRss: number | null;
  cpuSeconds: number | null;
  status: number | null;
  stdout: string;
  stderr: string;
} {
  const timeFile = join(out, "time.txt");
  const useTime = existsSync("/usr/bin/time");
  const started = performance.now();
  const r = useTime
    ? spawnSync("/usr/bin/time", ["-v", "-o", timeFile, cmd, ...args], {
        encoding: "utf8",
        maxBuffer: 1 << 28,
      })
    : spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 28 });
  const seconds = (performance.now() - started) / 1000;
  let peakRss: number | null = null;
  let cpuSeconds: number | null = null;
  if (useTime && existsSync(timeFile)) {
    const text = readFileSync(timeFile, "utf8");
    const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
    if (m) peakRss = Number(m[1]) * 1024;
    const user = /User time \(seconds\): ([\d.]+)/.exec(text);
    const sys = /System time \(seconds\): ([\d.]+)/.exec(text);
    if (user && sys) cpuSeconds = Number(user[1]) + Number(sys[1]);
  }
  return {
    seconds,
    peakRss,
    cpuSeconds,
    status: r.status,
    stdout: r.stdout ?? "",
    stderr: r.stderr ?? "",
  };
}

function ensureCapture(connections: number): { path: string; packets: number; bytes: number } {
  mkdirSync(out, { recursive: true });
  const path = join(out, `vip-${connections}.pcap`);
  const meta = `${path}.json`;
  const want = { version: GENERATOR_VERSION, connections };
  if (existsSync(path) && existsSync(meta)) {
    const got = JSON.parse(readFileSync(meta, "utf8")) as typeof want & { packets: number };
    if (got.version === want.version && got.connections === connections) {
      return { path, packets: got.packets, bytes: statSync(path).size };
    }
  }
  process.stdout.write(`generating ${path} (${connections} connections)… `);
  const t = performance.now();
  const g = generateCapture(path, { connections });
  process.stdout.write(
    `${g.packets} packets, ${(g.bytes / 1e6).toFixed(0)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s\n`,
  );
  writeFileSync(meta, JSON.stringify({ ...want, packets: g.packets }));
  return { path, packets: g.packets, bytes: g.bytes };
}

const fmtRate = (r: number) =>
  r >= 1e6 ? `${(r / 1e6).toFixed(2)} M/s` : `${(r / 1e3).toFixed(1)} k/s`;
const fmtMb = (b: number | null) => (b === null ? "-" : `${(b / 1024 / 1024).toFixed(0)} MB`);

async function main(): Promise<void> {
  const connections = Number(process.env.BENCH_CONNECTIONS ?? 200_000);
  const skip = new Set((process.env.BENCH_SKIP ?? "").split(",").filter((s) => s !== ""));
  const cap = ensureCapture(connections);
  const results: BenchResult[] = [];
  const bin = join(root, "dist", "src", "cli", "main.js");

  // svctrace ingest, end to end: a fresh process and a fresh database, as a user runs it.
  const db = join(out, "bench.db");
  for (const s of ["", "-wal", "-shm"]) rmSync(db + s, { force: true });
  const ing = timed(process.execPath, [
    bin,
    "ingest",
    "--json",
    "--db",
    db,
    "--node",
    "bench",
    cap.path,
  ]);
  if (ing.status !== 0) throw new Error(`svctrace ingest failed (${ing.status}): ${ing.stderr}`);
  const summary = JSON.parse(ing.stdout) as {
    packets: number;
    legs: number;
    translations: number;
    seconds: number;
  };
  results.push({
    name: "svctrace ingest (end to end)",
    unit: "packets",
    ops: summary.packets,
    seconds: ing.seconds,
    peakRss: ing.peakRss,
    cpuSeconds: ing.cpuSeconds,
    note: `${summary.legs} legs, ${summary.translations} translations, ${summary.seconds.toFixed(2)} s inside`,
  });
  if (summary.packets !== cap.packets)
    throw new Error(`ingest saw ${summary.packets} packets, the file has ${cap.packets}`);

  if (!skip.has("tcpdump") && have("tcpdump")) {
    const r = timed("tcpdump", ["-r", cap.path, "-w", "/dev/null"]);
    results.push({
      name: "tcpdump -r FILE -w /dev/null",
      unit: "packets",
      ops: cap.packets,
      seconds: r.seconds,
      peakRss: r.peakRss,
      cpuSeconds: r.cpuSeconds,
    });
  }
  if (!skip.has("pcap-parser")) {
    const script = `const p=require("pcap-parser").parse(process.argv[1]);let n=0;p.on("packet",()=>{n++});p.on("end",()=>console.log(n));`;
    const r = timed(process.execPath, ["-e", script, cap.path]);
    results.push({
      name: "pcap-parser (iterate only)",
      unit: "packets",
      ops: Number(r.stdout.trim()),
      seconds: r.seconds,
      peakRss: r.peakRss,
      cpuSeconds: r.cpuSeconds,
    });
  }
  if (!skip.has("tshark") && have("tshark")) {
    const r = timed("tshark", ["-n", "-q", "-z", "conv,tcp", "-r", cap.path]);
    const convs = r.stdout.split("\n").filter((l) => /<->/.test(l)).length;
    results.push({
      name: "tshark -q -z conv,tcp",
      unit: "packets",
      ops: cap.packets,
      seconds: r.seconds,
      peakRss: r.peakRss,
      cpuSeconds: r.cpuSeconds,
      note: `${convs} conversations`,
    });
  }

  const rulesModule = join(dirname(fileURLToPath(import.meta.url)), "rules.js");
  if (!skip.has("rules") && existsSync(rulesModule)) {
    const mod = (await import(rulesModule)) as { benchRules?: () => Promise<BenchResult[]> };
    if (mod.benchRules) results.push(...(await mod.benchRules()));
  }

  const ours = results[0]!;
  const oursRate = ours.ops / ours.seconds;
  process.stdout.write(
    `\ncapture: ${cap.path}\n  ${cap.packets} packets, ${connections} TCP connections through 10.96.0.10:80 (each packet pre- and post-DNAT), ${(cap.bytes / 1e6).toFixed(0)} MB\n\n`,
  );
  const header = `${"benchmark".padEnd(36)}${"wall s".padStart(8)}${"rate".padStart(12)}${"vs svctrace".padStart(13)}${"CPU s".padStart(8)}${"rate/CPU s".padStart(12)}${"peak RSS".padStart(10)}  note`;
  process.stdout.write(`${header}\n`);
  const oursCpu = ours.cpuSeconds ? ours.ops / ours.cpuSeconds : null;
  for (const r of results) {
    const rate = r.ops / r.seconds;
    const ratio = r.unit === "packets" ? `${(oursRate / rate).toFixed(2)}×` : "";
    const cpuRate = r.cpuSeconds ? r.ops / r.cpuSeconds : null;
    const cpuRatio =
      r.unit === "packets" && cpuRate && oursCpu
        ? ` (${(oursCpu / cpuRate).toFixed(2)}× by CPU)`
        : "";
    process.stdout.write(
      `${r.name.padEnd(36)}${r.seconds.toFixed(2).padStart(8)}${fmtRate(rate).padStart(12)}${ratio.padStart(13)}${(r.cpuSeconds ? r.cpuSeconds.toFixed(2) : "-").padStart(8)}${(cpuRate ? fmtRate(cpuRate) : "-").padStart(12)}${fmtMb(r.peakRss).padStart(10)}  ${r.unit === "packets" ? "" : `${r.unit} `}${r.note ?? ""}${cpuRatio}\n`,
    );
  }
  process.stdout.write(
    `\n"vs svctrace": how many times faster svctrace ingest is than that tool on the same file (wall time).\n` +
      `"rate/CPU s": operations per second of the process's own CPU time, which other load on the machine does not inflate.\n`,
  );
  process.stdout.write(`targets: ≥ 3 M packets/s end to end, peak RSS < 300 MB\n`);

  // analyze at scale runs in its own process so its peak RSS is its own, not the rule benches'.
  const analyzeModule = join(dirname(fileURLToPath(import.meta.url)), "analyze.js");
  if (!skip.has("analyze") && existsSync(analyzeModule)) {
    const run = spawnSync(process.execPath, [analyzeModule], { encoding: "utf8" });
    process.stdout.write(`\n${run.stdout}${run.stderr}`);
    process.stdout.write(`target: 1,000,000 connections well under a minute, bounded memory\n`);
  }
  writeFileSync(
    join(out, "results.json"),
    `${JSON.stringify({ capture: { ...cap, connections }, results }, null, 2)}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
