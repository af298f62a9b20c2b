import type { Command } from "commander";

/**
 * Every command registers itself on the program. One file per command in this folder;
 * add it here as `[name, () => import("./<name>.js").then((m) => m.register<Name>)]`
 * (keep the list sorted by command name; the name is the one the module registers).
 *
 * Loaded lazily: importing every command's module (and through them the whole tree: rules,
 * netfilter, lab, zod…) cost ~0.8 s of CPU per run, more than ingesting a million packets.
 * main.ts imports only the module of the command being run, and all of them for help.
 */
export type RegisterCommand = (program: Command) => void;

export type LazyCommand = readonly [name: string, load: () => Promise<RegisterCommand>];

export const commands: readonly LazyCommand[] = [
  ["analyze", () => import("./analyze.js").then((m) => m.registerAnalyze)],
  ["capture", () => import("./capture.js").then((m) => m.registerCapture)],
  ["collect", () => import("./collect.js").then((m) => m.registerCollect)],
  ["connections", () => import("./connections.js").then((m) => m.registerConnections)],
  ["demo", () => import("./demo.js").then((m) => m.registerDemo)],
  ["diff", () => import("./diff.js").then((m) => m.registerDiff)],
  ["findings", () => import("./findings.js").then((m) => m.registerFindings)],
  ["ingest", () => import("./ingest.js").then((m) => m.registerIngest)],
  ["lab", () => import("./lab.js").then((m) => m.registerLab)],
  ["legs", () => import("./legs.js").then((m) => m.registerLegs)],
  ["rules", () => import("./rules.js").then((m) => m.registerRules)],
  ["trace", () => import("./trace.js").then((m) => m.registerTrace)],
];

/**
 * The commands to load for these arguments (process.argv without node and script): only the
 * named command when the first argument names one; none for --version; all otherwise (help,
 * usage errors, which must list every command).
 */
export function commandsFor(args: readonly string[]): readonly LazyCommand[] {
  const first = args[0];
  if (first === "-V" || first === "--version") return [];
  const named = commands.find(([name]) => name === first);
  return named === undefined ? commands : [named];
}
