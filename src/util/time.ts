/** Time as used across svctrace: seconds since the epoch as a float (µs precision survives). */

/**
 * Parse a user-given time: ISO 8601 (a bare date-time means UTC) or epoch seconds.
 * Returns null when the text is neither.
 */
export function parseTimeArg(text: string): number | null {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const hasZone = /([zZ]|[+-]\d\d:?\d\d)$/.test(trimmed);
  const ms = Date.parse(hasZone ? trimmed : `${trimmed}Z`);
  return Number.isNaN(ms) ? null : ms / 1000;
}

export function formatTimeISO(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString();
}
