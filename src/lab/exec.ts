import { type ChildProcess, execFile, spawn } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { EnvironmentError } from "../util/errors.js";

/** Output of a finished command. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A command failed where the lab cannot go on; carries the command line and its stderr. */
export class LabCommandError extends Error {
  override name = "LabCommandError";
  constructor(
    readonly argv: string[],
    readonly result: ExecResult,
  ) {
    super(`command failed (exit ${result.code}): ${argv.join(" ")}: ${result.stderr.trim()}`);
  }
}

// Children run with TZ=UTC so iptables-save headers and tcpdump times agree with bundle.json.
const childEnv = { ...process.env, TZ: "UTC", LC_ALL: "C" };

/** Run a command; resolve with its exit code (never rejects on a non-zero exit). */
export function run(argv: string[], input?: string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) {
      reject(new Error("empty command"));
      return;
    }
    const child = execFile(
      cmd,
      args,
      { env: childEnv, maxBuffer: 256 * 1024 * 1024, encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") {
          reject(error);
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** Run a command and throw LabCommandError unless it exits 0. */
export async function must(argv: string[], input?: string): Promise<string> {
  const result = await run(argv, input);
  if (result.code !== 0) throw new LabCommandError(argv, result);
  return result.stdout;
}

/** argv prefix that runs a command inside a named network namespace. */
export function inNs(ns: string, argv: string[]): string[] {
  return ["ip", "netns", "exec", ns, ...argv];
}

/** Start a long-running process (server, capture) inside a namespace. */
export function spawnInNs(ns: string, argv: string[]): ChildProcess {
  const full = inNs(ns, argv);
  return spawn(full[0] ?? "ip", full.slice(1), {
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Names of the network namespaces that exist now (from /run/netns, as `ip netns` keeps them). */
export function listNamespaces(): string[] {
  const dir = "/run/netns";
  if (!existsSync(dir)) return [];
  return readdirSync(dir).sort();
}

const requiredTools = ["ip", "iptables-restore", "iptables-save", "conntrack", "tcpdump"];

function onPath(tool: string): boolean {
  for (const dir of (process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    if (dir && existsSync(join(dir, tool))) return true;
  }
  return ["/usr/sbin", "/sbin"].some((dir) => existsSync(join(dir, tool)));
}

/**
 * The lab needs root (CAP_NET_ADMIN in the initial user namespace, to create namespaces) and
 * the tools it drives. Throws EnvironmentError naming what is missing.
 */
export function checkLabEnvironment(): void {
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new EnvironmentError(
      "the lab needs root to create network namespaces (run it as root, e.g. with sudo, or in CI)",
    );
  }
  if (!existsSync("/proc/self/ns/net")) {
    throw new EnvironmentError("this kernel has no network namespace support (/proc/self/ns/net)");
  }
  const missing = requiredTools.filter((tool) => !onPath(tool));
  if (missing.length > 0) {
    throw new EnvironmentError(
      `the lab needs ${missing.join(", ")} (Debian/Ubuntu: apt-get install iproute2 iptables conntrack tcpdump)`,
    );
  }
}

/** True when this process could run the lab (used by tests to skip with a reason). */
export function labAvailable(): boolean {
  try {
    checkLabEnvironment();
    return true;
  } catch {
    return false;
  }
}

/**
 * The built lab agent (src/lab/agent.ts), which the lab runs inside namespaces for servers and
 * clients. From dist/ it is a sibling; from src/ (tests) it is the build output, which the test
 * global setup keeps fresh.
 */
export function agentEntryPoint(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, "agent.js");
  if (existsSync(sibling)) return sibling;
  const built = join(here, "..", "..", "dist", "src", "lab", "agent.js");
  if (existsSync(built)) return built;
  throw new EnvironmentError(
    `the svctrace lab agent is not built (looked for ${sibling} and ${built}); run npm run build`,
  );
}

/**
 * A private copy of the built agent for one run. dist/ is shared: a rebuild in the middle of a
 * run (another terminal, a test's global setup) would otherwise pull the files from under the
 * pods' servers. The agent is a few small ES modules; only the DNS ones need a dependency.
 */
export function privateAgent(): { path: string; dir: string; cleanup: () => void } {
  const source = dirname(agentEntryPoint());
  const dir = mkdtempSync(join(tmpdir(), "svctrace-agent-"));
  for (const file of ["agent.js", "send.js", "serve.js", "dns-server.js", "resolve.js"]) {
    copyFileSync(join(source, file), join(dir, file));
  }
  writeFileSync(join(dir, "package.json"), '{"type":"module"}\n');
  // The DNS server and resolver load dns-packet: link the installed package (node resolves
  // its own dependencies from its real path).
  try {
    const pkg = dirname(createRequire(import.meta.url).resolve("dns-packet/package.json"));
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(pkg, join(dir, "node_modules", "dns-packet"), "dir");
  } catch {
    // Without dns-packet only the DNS commands fail, with their own error.
  }
  return {
    path: join(dir, "agent.js"),
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
