/**
 * Error families. The CLI maps them to exit codes: InputError and UsageError → 2, anything
 * else → 1 (a bug). Messages name the file and the line or byte offset so a user can look.
 */

export interface InputLocation {
  /** Path of the file (or a label such as "<stdin>"). */
  file?: string;
  /** 1-based line number in a text input. */
  line?: number;
  /** Byte offset in a binary input. */
  offset?: number;
}

/** Base class: every error svctrace raises on purpose derives from it. */
export class SvctraceError extends Error {
  override name = "SvctraceError";
}

/** The input is not what it should be: bad file, bad line, impossible length. Exit code 2. */
export class InputError extends SvctraceError {
  override name = "InputError";
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly offset: number | undefined;
  /** The reason alone, without the location prefix. */
  readonly reason: string;

  constructor(reason: string, where: InputLocation = {}, options?: { cause?: unknown }) {
    super(formatLocation(where) + reason, options);
    this.reason = reason;
    this.file = where.file;
    this.line = where.line;
    this.offset = where.offset;
  }
}

/** The command line asked for something impossible. Exit code 2. */
export class UsageError extends SvctraceError {
  override name = "UsageError";
}

/** A run-time precondition outside our control failed (no root, missing tool). Exit code 2. */
export class EnvironmentError extends SvctraceError {
  override name = "EnvironmentError";
}

export function formatLocation(where: InputLocation): string {
  const parts: string[] = [];
  if (where.file !== undefined) parts.push(where.file);
  if (where.line !== undefined) parts.push(`line ${where.line}`);
  if (where.offset !== undefined) parts.push(`byte offset ${where.offset}`);
  return parts.length === 0 ? "" : `${parts.join(": ")}: `;
}

/** Quote a piece of hostile input for an error message: bounded, control characters escaped. */
export function quoteInput(text: string, max = 120): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return JSON.stringify(cut);
}

/** First bytes of a buffer in hex, for "this is not a capture" messages. */
export function hexPreview(bytes: Uint8Array, count = 16): string {
  const out: string[] = [];
  for (let i = 0; i < Math.min(count, bytes.length); i++) {
    out.push((bytes[i] ?? 0).toString(16).padStart(2, "0"));
  }
  return out.join(" ");
}
