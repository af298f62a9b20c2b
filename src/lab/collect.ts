/**
 * `svctrace collect`: gather one node's bundle directory on a real node (root), the layout
 * `svctrace ingest DIR` reads without flags:
 *
 *   bundle.json                              name, time zone, the node and its addresses, files
 *   inventory/<time>.json                    kubectl get svc,endpointslices -A -o json (start, end)
 *   nodes/<node>/capture.pcap                tcpdump -i any -y LINUX_SLL2 -s 1500 -B 16384 (ifindex per packet)
 *     or nodes/<node>/capture.pcapng         svctrace's own live capture when tcpdump is missing
 *   nodes/<node>/iptables-<time>.save        iptables-save, ip6tables-save at start and end
 *   nodes/<node>/nft-<time>.json             nft -j list ruleset, start and end
 *   nodes/<node>/conntrack-<time>.txt        conntrack -L, start and end
 *   nodes/<node>/addr.json                   ip -j addr (ifindex → name for the capture, addresses)
 *   collect.log                              what ran, what was missing, what failed
 *
 * Capture first, dumps second: the capture then spans both rule snapshots. A missing tool or a
 * failing command is logged and reported, never fatal — a partial bundle beats none.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { delimiter, join, relative } from "node:path";
import { EnvironmentError, UsageError } from "../util/errors.js";
import { type LiveCaptureStats, liveCaptureToFile } from "./live-capture.js";

export interface CollectOptions {
  node: string;
  /** How long to capture, in seconds. */
  durationSeconds: number;
  outDir: string;
  /** Capture interface, default "any". */
  iface?: string;
  /** BPF filter for the capture. */
  filter?: string;
  /** "auto": tcpdump when installed, else svctrace's live capture; "none": dumps only. */
  capture?: "auto" | "tcpdump" | "live" | "none";
  /** Take the kubectl inventory (when kubectl exists). Default true. */
  inventory?: boolean;
  /** Ends the capture early (Ctrl-C); the end-of-run dumps are still taken. */
  signal?: AbortSignal;
  /** Progress lines for a person (the CLI prints them to stderr). */
  onLog?: (line: string) => void;
  /** Clock, for tests. */
  now?: () => Date;
  /** Directories to look for tools in, instead of PATH plus the sbin directories (tests). */
  searchPath?: string[];
}

export interface CollectCapture {
  engine: "tcpdump" | "svctrace" | "none";
  file: string | null;
  /** Packets the capture wrote, when the engine says. */
  packets: number | null;
  /** Packets the kernel dropped (tcpdump's "dropped by kernel"), when the engine says. */
  droppedByKernel: number | null;
}

export interface CollectResult {
  outDir: string;
  /** Files written, relative to outDir. */
  files: string[];
  /** Tools that were not installed. */
  missing: string[];
  /** Commands that ran and failed, one line each. */
  problems: string[];
  capture: CollectCapture;
  start: string;
  end: string;
}

/** "60s", "2m", "1h", "1.5", "90" → seconds; null when it is not a duration. */
export function parseDurationSeconds(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) return null;
  const value = Number(m[1]);
  const unit = m[2] ?? "s";
  const factor = unit === "ms" ? 0.001 : unit === "s" ? 1 : unit === "m" ? 60 : 3600;
  return value * factor;
}

/** Compact UTC time for file names (`20261125T162000Z`), which ingest reads back. */
export function fileTime(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

/** Absolute path of an executable found in PATH (plus the sbin dirs sudo often drops), or null. */
export function findTool(name: string, searchPath?: string[]): string | null {
  const dirs =
    searchPath ??
    (process.env.PATH ?? "").split(delimiter).concat(["/usr/sbin", "/sbin", "/usr/local/sbin"]);
  for (const dir of dirs) {
    if (dir === "") continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return null;
}

interface RunResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  error: string | null;
}

// Children see UTC so iptables-save headers agree with bundle.json.
const childEnv = { ...process.env, TZ: "UTC", LC_ALL: "C" };

function runTool(path: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(path, args, { env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    let settled = false;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => {
      err += b.toString("utf8");
    });
    child.on("error", (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ code: null, stdout: Buffer.alloc(0), stderr: err, error: e.message });
    });
    child.on("close", (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        code,
        stdout: Buffer.concat(out),
        stderr: err,
        error: signal !== null ? `killed by ${signal} (timeout ${timeoutMs / 1000}s)` : null,
      });
    });
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

function lastLine(text: string): string {
  return text.trim().split("\n").pop() ?? "";
}

interface StartedTcpdump {
  child: ChildProcess;
  closed: Promise<number | null>;
  exited: () => boolean;
  stderr: () => string;
}

/** Start tcpdump and wait until it says it is listening (or has already died). */
async function startTcpdump(bin: string, args: string[]): Promise<StartedTcpdump> {
  const child = spawn(bin, args, { env: childEnv, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  let exited = false;
  const closed = new Promise<number | null>((resolve) => {
    child.on("close", (code) => {
      exited = true;
      resolve(code);
    });
    child.on("error", (e) => {
      stderr += `${e.message}\n`;
    });
  });
  const listening = new Promise<void>((resolve) => {
    child.stderr?.on("data", (b: Buffer) => {
      stderr += b.toString("utf8");
      if (/listening on/.test(stderr)) resolve();
    });
    void closed.then(() => resolve());
  });
  await Promise.race([listening, sleep(10_000)]);
  return { child, closed, exited: () => exited, stderr: () => stderr };
}

/** Gather the bundle. Throws only for bad options or an unusable output directory. */
export async function collect(options: CollectOptions): Promise<CollectResult> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(options.node)) {
    throw new UsageError(
      `node name ${JSON.stringify(options.node)} must be a plain name (letters, digits, . _ -)`,
    );
  }
  if (!(options.durationSeconds >= 0)) {
    throw new UsageError(`duration ${options.durationSeconds} must be zero or more seconds`);
  }
  const now = options.now ?? (() => new Date());
  const out = options.outDir;
  const nodeDir = join(out, "nodes", options.node);
  const invDir = join(out, "inventory");
  try {
    mkdirSync(nodeDir, { recursive: true });
  } catch (error) {
    throw new EnvironmentError(`cannot create ${nodeDir}: ${(error as Error).message}`, {
      cause: error,
    });
  }

  const logLines: string[] = [];
  const files: string[] = [];
  const missing: string[] = [];
  const problems: string[] = [];
  const log = (line: string) => {
    logLines.push(`${now().toISOString()} ${line}`);
    options.onLog?.(line);
  };
  const tools = new Map<string, string | null>();
  const tool = (name: string): string | null => {
    if (!tools.has(name)) {
      const path = findTool(name, options.searchPath);
      tools.set(name, path);
      if (path === null) {
        missing.push(name);
        log(`missing: ${name} is not installed; its output is left out`);
      }
    }
    return tools.get(name) ?? null;
  };
  const write = (path: string, data: string | Buffer) => {
    writeFileSync(path, data);
    files.push(relative(out, path));
  };
  const problem = (what: string) => {
    problems.push(what);
    log(`problem: ${what}`);
  };

  /** Run a dump command and write its stdout; report failures. */
  const dump = async (
    name: string,
    args: string[],
    path: string,
    opts: { keepStderr?: RegExp } = {},
  ) => {
    const bin = tool(name);
    if (bin === null) return;
    const r = await runTool(bin, args, 60_000);
    const cmd = `${name} ${args.join(" ")}`;
    if (r.code !== 0 || r.error !== null) {
      problem(`${cmd}: ${r.error ?? `exit ${r.code}`}: ${r.stderr.trim().split("\n")[0] ?? ""}`);
      return;
    }
    let data = r.stdout;
    // conntrack prints its "N flow entries have been shown" summary on stderr; keep it so an
    // empty table is still recognisably a conntrack dump.
    const extra = opts.keepStderr
      ? r.stderr.split("\n").filter((l) => opts.keepStderr?.test(l))
      : [];
    if (extra.length > 0) data = Buffer.concat([data, Buffer.from(`${extra.join("\n")}\n`)]);
    write(path, data);
    log(`wrote ${relative(out, path)} (${data.length} bytes) from ${cmd}`);
  };

  const snapshot = async (when: Date) => {
    const t = fileTime(when);
    await dump("iptables-save", [], join(nodeDir, `iptables-${t}.save`));
    await dump("ip6tables-save", [], join(nodeDir, `ip6tables-${t}.save`));
    await dump("nft", ["-j", "list", "ruleset"], join(nodeDir, `nft-${t}.json`));
    await dump("conntrack", ["-L"], join(nodeDir, `conntrack-${t}.txt`), {
      keepStderr: /flow entries have been shown/,
    });
    if (options.inventory ?? true) await inventory(when);
  };

  let podCIDR: string | null = null;
  const inventory = async (when: Date) => {
    const bin = tool("kubectl");
    if (bin === null) return;
    const args = ["get", "svc,endpointslices", "-A", "-o", "json", "--request-timeout=15s"];
    const r = await runTool(bin, args, 30_000);
    if (r.code !== 0 || r.error !== null) {
      problem(
        `kubectl ${args.join(" ")}: ${r.error ?? `exit ${r.code}`}: ${r.stderr.trim().split("\n")[0] ?? ""}`,
      );
      return;
    }
    mkdirSync(invDir, { recursive: true });
    write(join(invDir, `${fileTime(when)}.json`), r.stdout);
    log(`wrote inventory/${fileTime(when)}.json (${r.stdout.length} bytes)`);
    if (podCIDR === null) {
      const n = await runTool(
        bin,
        ["get", "node", options.node, "-o", "json", "--request-timeout=15s"],
        30_000,
      );
      if (n.code === 0) {
        try {
          const spec = (JSON.parse(n.stdout.toString("utf8")) as { spec?: { podCIDR?: string } })
            .spec;
          podCIDR = spec?.podCIDR ?? null;
        } catch {
          // Not fatal: bundle.json just lacks the pod CIDR.
        }
      }
    }
  };

  const start = now();
  log(`collect on node ${options.node} for ${options.durationSeconds}s into ${out}`);

  // Addresses first: they name the capture's interface indexes.
  await dump("ip", ["-j", "addr"], join(nodeDir, "addr.json"));

  // Start the capture before the first dumps so it spans both snapshots.
  const mode = options.capture ?? "auto";
  const iface = options.iface ?? "any";
  const capture: CollectCapture = {
    engine: "none",
    file: null,
    packets: null,
    droppedByKernel: null,
  };
  let stopCapture: (() => Promise<void>) | null = null;
  const tcpdump = mode === "auto" || mode === "tcpdump" ? tool("tcpdump") : null;
  if (tcpdump !== null) {
    const file = join(nodeDir, "capture.pcap");
    // -s 1500 -B 16384: without a bigger buffer, -i any drops packets in immediate mode.
    // -y LINUX_SLL2 keeps the interface index per packet (older tcpdumps default to SLL v1);
    // a tcpdump or libpcap too old for it gets a second try without.
    const base = ["-i", iface, "-s", "1500", "-B", "16384", "-n", "-w", file];
    if (options.filter) base.push(options.filter);
    let args = iface === "any" ? ["-y", "LINUX_SLL2", ...base] : base;
    let started = await startTcpdump(tcpdump, args);
    if (started.exited() && args !== base && /SLL2|data ?link/i.test(started.stderr())) {
      log(
        `tcpdump cannot write LINUX_SLL2 here (${lastLine(started.stderr())}); capturing without -y`,
      );
      args = base;
      started = await startTcpdump(tcpdump, args);
    }
    const { child, closed } = started;
    const exited = started.exited();
    const stderrOf = started.stderr;
    if (exited) {
      problem(`tcpdump ${args.join(" ")}: ${lastLine(stderrOf()) || "exited"}`);
    } else {
      capture.engine = "tcpdump";
      log(`capturing with tcpdump ${args.join(" ")}`);
      stopCapture = async () => {
        child.kill("SIGINT");
        const code = await Promise.race([closed, sleep(10_000).then(() => "timeout" as const)]);
        if (code === "timeout") {
          child.kill("SIGKILL");
          await closed;
        }
        const captured = /(\d+) packets? captured/.exec(stderrOf());
        const dropped = /(\d+) packets? dropped by kernel/.exec(stderrOf());
        capture.packets = captured ? Number(captured[1]) : null;
        capture.droppedByKernel = dropped ? Number(dropped[1]) : null;
        if (existsSync(file)) {
          capture.file = relative(out, file);
          files.push(capture.file);
        }
        log(
          `tcpdump stopped: ${capture.packets ?? "?"} packets captured, ${capture.droppedByKernel ?? "?"} dropped by kernel`,
        );
        if ((capture.droppedByKernel ?? 0) > 0) {
          problem(
            `the capture lost ${capture.droppedByKernel} packets (kernel drops): analysis must cope with missing legs`,
          );
        }
      };
    }
  }
  if (capture.engine === "none" && (mode === "auto" || mode === "live")) {
    const file = join(nodeDir, "capture.pcapng");
    const controller = new AbortController();
    let onReady: () => void = () => {};
    const ready = new Promise<"ready">((resolve) => {
      onReady = () => resolve("ready");
    });
    const running = liveCaptureToFile(file, {
      iface,
      ...(options.filter ? { filter: options.filter } : {}),
      signal: controller.signal,
      onReady,
    }).catch((error: unknown) => error as Error);
    // Either every device is open and capturing, or the capture failed to start.
    const early = await Promise.race([running, ready]);
    if (early instanceof Error) {
      if (early instanceof EnvironmentError)
        missing.push("cap (npm package, for svctrace's live capture)");
      problem(`live capture: ${early.message}`);
    } else if (early !== "ready") {
      problem("live capture ended before the run started");
    } else {
      capture.engine = "svctrace";
      log(`capturing with svctrace's live capture on ${iface}`);
      stopCapture = async () => {
        controller.abort();
        const r = await running;
        if (r instanceof Error) {
          problem(`live capture: ${r.message}`);
        } else {
          const stats = r as LiveCaptureStats;
          capture.packets = stats.packets;
          capture.file = relative(out, file);
          files.push(capture.file);
          log(`live capture stopped: ${stats.packets} packets`);
        }
      };
    }
  }
  if (capture.engine === "none" && mode !== "none") problem("no packet capture was taken");

  await snapshot(start);
  if (options.durationSeconds > 0) {
    const elapsed = now().getTime() - start.getTime();
    await sleep(Math.max(0, options.durationSeconds * 1000 - elapsed), options.signal);
  }
  let end = now();
  // Two snapshots in the same second would share a file name.
  if (fileTime(end) === fileTime(start)) {
    await sleep(1000 - (end.getTime() % 1000) + 5);
    end = now();
  }
  await snapshot(end);
  if (stopCapture !== null) await stopCapture();

  const addresses: string[] = [];
  try {
    const addr = JSON.parse(
      (await runTool(tool("ip") ?? "ip", ["-j", "addr"], 10_000)).stdout.toString("utf8") || "[]",
    ) as { addr_info?: { local?: string; scope?: string }[] }[];
    for (const link of addr) {
      for (const a of link.addr_info ?? []) {
        if (a.local !== undefined && a.scope !== "host") addresses.push(a.local);
      }
    }
  } catch {
    // addr.json's own failure is already logged.
  }

  log(`done: ${files.length} files, ${missing.length} tools missing, ${problems.length} problems`);
  const bundle = {
    name: `${options.node}-${fileTime(start)}`,
    description: `svctrace collect on node ${options.node}, ${options.durationSeconds}s from ${start.toISOString()}`,
    timeZone: "UTC",
    createdBy: "svctrace collect",
    start: start.toISOString(),
    end: end.toISOString(),
    nodes: [{ name: options.node, addresses, podCIDR }],
    capture,
    files: [...files, "collect.log"].sort(),
    missing,
    problems,
  };
  writeFileSync(join(out, "collect.log"), `${logLines.join("\n")}\n`);
  writeFileSync(join(out, "bundle.json"), `${JSON.stringify(bundle, null, 2)}\n`);
  files.push("collect.log", "bundle.json");
  return {
    outDir: out,
    files: files.sort(),
    missing,
    problems,
    capture,
    start: start.toISOString(),
    end: end.toISOString(),
  };
}
