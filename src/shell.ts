/** Quoting for command lines run by the target's `sh`. Pure. */

/** One shell word, whatever it contains: `it's` → `'it'\''s'`. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
