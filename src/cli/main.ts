#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { commandsFor } from "./commands/index.js";
import { EXIT_BAD_INPUT, EXIT_BUG, ExitRequest, exitCodeFor } from "./exit.js";

/** The program with the commands these arguments need (all of them when `args` is omitted). */
export async function buildProgram(args?: readonly string[]): Promise<Command> {
  const program = new Command();
  program
    .name("svctrace")
    .description(
      "Where every connection to a Kubernetes Service really went, why, and whether that was right",
    )
    .version("0.1.0")
    .showHelpAfterError(false)
    .exitOverride();
  const wanted = commandsFor(args ?? []);
  const registers = await Promise.all(wanted.map(([, load]) => load()));
  for (const register of registers) register(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  try {
    const program = await buildProgram(argv.slice(2));
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are not errors; commander has already printed the reason.
      return error.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
    }
    if (error instanceof ExitRequest) return error.code;
    const code = exitCodeFor(error);
    const message = error instanceof Error ? error.message : String(error);
    if (code === EXIT_BUG) {
      process.stderr.write(`svctrace: internal error: ${message}\n`);
      if (error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    } else {
      process.stderr.write(`svctrace: ${message}\n`);
    }
    return code;
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`svctrace: internal error: ${String(error)}\n`);
    process.exitCode = EXIT_BUG;
  },
);
