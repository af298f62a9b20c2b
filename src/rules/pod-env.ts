import { InputError, quoteInput } from "../util/errors.js";
import { parseTimeArg } from "../util/time.js";

/**
 * A pod's environment as `kubectl exec POD -- env` (or `env` inside it) prints it: one
 * NAME=value per line. Optional header comments written by `svctrace collect` or by hand carry
 * the pod and its start time:
 *
 *   # pod: default/client-7f9c
 *   # started-at: 2026-11-25T16:31:59Z
 *
 * Values may span lines (env prints embedded newlines as they are): a line without `NAME=` at
 * its start continues the previous value.
 */
export interface PodEnv {
  pod: string | null;
  startedAt: number | null;
  vars: Record<string, string>;
}

const NAME = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/;

export function parsePodEnv(text: string, source: string): PodEnv {
  const out: PodEnv = { pod: null, startedAt: null, vars: {} };
  let last: string | null = null;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").replace(/\r$/, "");
    const header = /^#\s*(pod|started-at)\s*:\s*(.+?)\s*$/i.exec(line);
    if (header !== null) {
      const value = header[2] ?? "";
      if ((header[1] ?? "").toLowerCase() === "pod") {
        if (!/^[^/\s]+\/[^/\s]+$/.test(value)) {
          throw new InputError(`pod must be NAMESPACE/NAME, got ${quoteInput(value)}`, {
            file: source,
            line: i + 1,
          });
        }
        out.pod = value;
      } else {
        const t = parseTimeArg(value);
        if (t === null) {
          throw new InputError(`started-at is not a time: ${quoteInput(value)}`, {
            file: source,
            line: i + 1,
          });
        }
        out.startedAt = t;
      }
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = NAME.exec(line);
    if (m !== null && m[1] !== undefined) {
      out.vars[m[1]] = m[2] ?? "";
      last = m[1];
    } else if (last !== null) {
      out.vars[last] += `\n${line}`;
    } else if (line.trim() !== "") {
      throw new InputError(`not an environment dump (NAME=value expected): ${quoteInput(line)}`, {
        file: source,
        line: i + 1,
      });
    }
  }
  // A trailing newline of the dump is not part of the last value.
  if (last !== null) out.vars[last] = (out.vars[last] ?? "").replace(/\n+$/, "");
  return out;
}

/** Does this text look like a pod's env dump (Kubernetes service variables in NAME=value lines)? */
export function looksLikePodEnv(text: string): boolean {
  const lines = text.split("\n", 200).filter((l) => l.trim() !== "" && !l.startsWith("#"));
  if (lines.length === 0) return false;
  const ok = lines.filter((l) => NAME.test(l)).length;
  return ok / lines.length >= 0.75 && /^[A-Z0-9_]+_SERVICE_HOST=/m.test(text);
}

/**
 * The text stored for a pod's env dump: the dump with `# pod:` / `# started-at:` header lines
 * set from the command line (`svctrace ingest --pod NS/NAME [--started-at T]`), which win over
 * headers already in the file. Throws InputError when the result is not an env dump.
 */
export function podEnvDocument(
  text: string,
  source: string,
  pod: string | null,
  startedAt: number | null,
): { text: string; env: PodEnv } {
  const env = parsePodEnv(text, source);
  if (pod !== null) {
    if (!/^[^/\s]+\/[^/\s]+$/.test(pod)) {
      throw new InputError(`--pod must be NAMESPACE/NAME, got ${quoteInput(pod)}`);
    }
    env.pod = pod;
  }
  if (startedAt !== null) env.startedAt = startedAt;
  if (env.pod === null) {
    throw new InputError("a pod env dump needs its pod: give --pod NAMESPACE/NAME", {
      file: source,
    });
  }
  const header = [`# pod: ${env.pod}`];
  if (env.startedAt !== null)
    header.push(`# started-at: ${new Date(env.startedAt * 1000).toISOString()}`);
  const body = text
    .split("\n")
    .filter((l) => !/^#\s*(pod|started-at)\s*:/i.test(l))
    .join("\n");
  return { text: `${header.join("\n")}\n${body}`, env };
}
