import type { ChildProcess } from "node:child_process";
import { spawnInNs } from "./exec.js";

/*
 * A node's capture, as a person would take it: `tcpdump -i any` with SLL2 headers (packet
 * type and interface index per packet). -s 1500 -B 16384 keeps the kernel from dropping
 * packets under the lab's bursts (with defaults it dropped 5–30%); -U flushes per packet;
 * --immediate-mode hands each packet over at once: without it libpcap reads the ring buffer a
 * block at a time (up to its 1 s timeout), and the packets of a block not yet handed over
 * when tcpdump is stopped are lost — the last few hundred milliseconds of a run.
 */

export interface CaptureStats {
  captured: number;
  received: number;
  dropped: number;
}

export interface RunningCapture {
  ns: string;
  file: string;
  stop(): Promise<CaptureStats>;
}

export function tcpdumpArgs(file: string): string[] {
  return [
    "tcpdump",
    "-i",
    "any",
    "-y",
    "LINUX_SLL2",
    "-n",
    "-s",
    "1500",
    "-B",
    "16384",
    "-U",
    "--immediate-mode",
    "-w",
    file,
  ];
}

export function parseTcpdumpStats(stderr: string): CaptureStats | null {
  const num = (re: RegExp): number | null => {
    const m = re.exec(stderr);
    return m ? Number(m[1]) : null;
  };
  const captured = num(/(\d+) packets? captured/);
  const received = num(/(\d+) packets? received by filter/);
  const dropped = num(/(\d+) packets? dropped by kernel/);
  if (captured === null || received === null || dropped === null) return null;
  return { captured, received, dropped };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

/** Start tcpdump in a namespace and resolve once it is listening (so no early packet is lost). */
export function startCapture(ns: string, file: string): Promise<RunningCapture> {
  const child = spawnInNs(ns, tcpdumpArgs(file));
  let stderr = "";
  child.stdout?.resume();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`tcpdump in ${ns} did not start: ${stderr.trim()}`));
    }, 10_000);
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      stderr += chunk;
      if (/listening on/.test(stderr)) {
        clearTimeout(timer);
        resolve({
          ns,
          file,
          async stop() {
            const done = exited(child);
            child.kill("SIGINT");
            await done;
            const stats = parseTcpdumpStats(stderr);
            if (stats === null) {
              throw new Error(`tcpdump in ${ns} printed no statistics: ${stderr.trim()}`);
            }
            return stats;
          },
        });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump in ${ns} exited with ${code}: ${stderr.trim()}`));
    });
  });
}
