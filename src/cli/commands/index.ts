import type { Command } from "commander";
import { registerDemo } from "./demo.js";
import { registerIngest } from "./ingest.js";
import { registerLegs } from "./legs.js";

/**
 * Every command registers itself on the program. One file per command in this folder;
 * add its register function here (keep the list sorted by command name).
 */
export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [
  registerDemo,
  registerIngest,
  registerLegs,
];
