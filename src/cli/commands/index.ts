import type { Command } from "commander";
import { registerAnalyze } from "./analyze.js";
import { registerCapture } from "./capture.js";
import { registerCollect } from "./collect.js";
import { registerConnections } from "./connections.js";
import { registerDemo } from "./demo.js";
import { registerDiff } from "./diff.js";
import { registerFindings } from "./findings.js";
import { registerIngest } from "./ingest.js";
import { registerLab } from "./lab.js";
import { registerLegs } from "./legs.js";
import { registerRules } from "./rules.js";
import { registerTrace } from "./trace.js";

/**
 * Every command registers itself on the program. One file per command in this folder;
 * add its register function here (keep the list sorted by command name).
 */
export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [
  registerAnalyze,
  registerCapture,
  registerCollect,
  registerConnections,
  registerDemo,
  registerDiff,
  registerFindings,
  registerIngest,
  registerLab,
  registerLegs,
  registerRules,
  registerTrace,
];
