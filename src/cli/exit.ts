import { EnvironmentError, InputError, UsageError } from "../util/errors.js";

/** Exit codes, the same for every command (DESIGN.md "Interfaces"). */
export const EXIT_OK = 0;
export const EXIT_BUG = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_FAIL_ON = 3;

/** Thrown by a command that finished its work but must exit non-zero (e.g. --fail-on). */
export class ExitRequest extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

export function exitCodeFor(error: unknown): number {
  if (error instanceof ExitRequest) return error.code;
  if (error instanceof InputError || error instanceof UsageError) return EXIT_BAD_INPUT;
  if (error instanceof EnvironmentError) return EXIT_BAD_INPUT;
  return EXIT_BUG;
}
