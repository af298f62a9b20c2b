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

/** Returns the tokens, or a string describing why the line cannot be split. */
export function tokenizeRule(line: string): Token[] | string {
  const tokens: Token[] = [];
  let buf = "";
  let inToken = false;
  let quoted = false;
  let inQuote = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (inQuote) {
      if (c === "\\" && i + 1 < line.length) {
        buf += line[++i];
      } else if (c === '"') {
        inQuote = false;
      } else {
        buf += c;
      }
      continue;
    }
    if (c === '"') {
      inQuote = true;
      quoted = true;
      inToken = true;
    } else if (c === " " || c === "\t" || c === "\n" || c === "\r") {
      if (inToken) {
        tokens.push({ text: buf, quoted });
        buf = "";
        inToken = false;
        quoted = false;
      }
    } else {
      buf += c;
      inToken = true;
    }
  }
  if (inQuote) return "unterminated quote";
  if (inToken) tokens.push({ text: buf, quoted });
  return tokens;
}
