/**
 * Splitting a rule line into arguments the way iptables-restore does (xtables
 * `add_param_to_argv`): whitespace separates, double quotes group (and may start mid-word),
 * a backslash inside quotes escapes the next character. Single quotes are ordinary characters.
 */

export interface Token {
  text: string;
  /** Any part was quoted: `"-x"` or `"!"` is then a value, never an option or a negation. */
  quoted: boolean;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13;
}

/** Returns the tokens, or a string describing why the line cannot be split. */
export function tokenizeRule(line: string): Token[] | string {
  const tokens: Token[] = [];
  const n = line.length;
  let i = 0;
  while (i < n) {
    while (i < n && isSpace(line.charCodeAt(i))) i++;
    if (i >= n) break;
    // Fast path: a plain word is a slice of the line (no per-character string building; a
    // 25 MB dump has millions of words).
    const start = i;
    while (i < n) {
      const c = line.charCodeAt(i);
      if (isSpace(c) || c === 34) break;
      i++;
    }
    if (i >= n || line.charCodeAt(i) !== 34) {
      tokens.push({ text: line.slice(start, i), quoted: false });
      continue;
    }
    // Slow path: the word has quotes somewhere; assemble it from pieces.
    let buf = line.slice(start, i);
    let inQuote = false;
    while (i < n) {
      const c = line.charCodeAt(i);
      if (inQuote) {
        if (c === 92) {
          // A backslash escapes the next character; a trailing one is kept as written.
          buf += i + 1 < n ? line[i + 1] : "\\";
          i += 2;
          continue;
        }
        if (c === 34) {
          inQuote = false;
          i++;
          continue;
        }
        const s = i;
        while (i < n) {
          const d = line.charCodeAt(i);
          if (d === 92 || d === 34) break;
          i++;
        }
        buf += line.slice(s, i);
        continue;
      }
      if (c === 34) {
        inQuote = true;
        i++;
        continue;
      }
      if (isSpace(c)) break;
      const s = i;
      while (i < n) {
        const d = line.charCodeAt(i);
        if (d === 34 || isSpace(d)) break;
        i++;
      }
      buf += line.slice(s, i);
    }
    if (inQuote) return "unterminated quote";
    tokens.push({ text: buf, quoted: true });
  }
  return tokens;
}
