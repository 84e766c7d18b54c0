/**
 * Keeps a rendering under a byte limit: GitHub drops a step summary over 1 MiB whole, so the
 * longest lists and texts are shortened, and the summary says what was left out. Pure.
 */

/** How many rows of each list and how many characters of each text a rendering keeps. */
export interface Limits {
  rows: number;
  chars: number;
}

/** Keeps everything. */
export const NO_LIMITS: Limits = { rows: Infinity, chars: Infinity };

/** From everything down to counts only; a rendering takes the first that fits. */
export const LEVELS: readonly Limits[] = [
  NO_LIMITS,
  { rows: 2000, chars: 20_000 },
  { rows: 500, chars: 4000 },
  { rows: 100, chars: 1000 },
  { rows: 20, chars: 300 },
  { rows: 0, chars: 100 },
];

/** GitHub's limit is 1 MiB per step; this leaves room for what @actions/core adds. */
export const DEFAULT_MAX_BYTES = 1_000_000;

const count = (n: number) => n.toLocaleString('en-US');

/** Shortens lists and texts to its limits and remembers what it left out. */
export class Cuts {
  private readonly cut = new Map<string, { left: number; of: number; unit: 'rows' | 'chars' }>();

  constructor(readonly limits: Limits = NO_LIMITS) {}

  /** The first rows of `xs` (`scale` times the limit); `what` names them in the note. */
  rows<T>(xs: readonly T[], what: string, scale = 1): T[] {
    const keep = this.limits.rows * scale;
    if (xs.length <= keep) return [...xs];
    this.note(what, xs.length - keep, xs.length, 'rows');
    return xs.slice(0, keep);
  }

  /** `s`, or its head and its tail (where output ends and errors say why) with the middle left out. */
  text(s: string, what: string, scale = 1): string {
    const keep = this.limits.chars * scale;
    if (s.length <= keep) return s;
    const head = boundary(s, Math.floor(keep / 3));
    const tail = boundary(s, s.length - Math.ceil((keep * 2) / 3));
    this.note(what, tail - head, s.length, 'chars');
    return `${s.slice(0, head)} … [${count(tail - head)} characters left out] … ${s.slice(tail)}`;
  }

  /** What was left out, one phrase each; empty when nothing was. */
  notes(): string[] {
    return [...this.cut].map(([what, c]) =>
      c.unit === 'rows'
        ? `${count(c.left)} of ${count(c.of)} ${what}`
        : `${count(c.left)} of ${count(c.of)} characters of ${what}`,
    );
  }

  private note(what: string, left: number, of: number, unit: 'rows' | 'chars'): void {
    const c = this.cut.get(what) ?? { left: 0, of: 0, unit };
    this.cut.set(what, { left: c.left + left, of: c.of + of, unit });
  }
}

/** An index not inside a surrogate pair. */
function boundary(s: string, i: number): number {
  const at = s.charCodeAt(i);
  return at >= 0xdc00 && at <= 0xdfff ? i - 1 : i;
}

/** UTF-8 bytes, as GitHub measures the step summary. */
export const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/**
 * The first rendering, from LEVELS in order, that fits in `maxBytes`. If even the shortest does
 * not fit, its end is cut at a character boundary and `cutNote(bytes)` says so.
 */
export function fitToBytes(
  render: (cuts: Cuts) => string,
  maxBytes: number,
  cutNote: (maxBytes: number) => string,
): string {
  let out = '';
  for (const limits of LEVELS) {
    out = render(new Cuts(limits));
    if (utf8Bytes(out) <= maxBytes) return out;
  }
  const note = cutNote(maxBytes);
  const room = maxBytes - utf8Bytes(note);
  if (room <= 0) return cutUtf8(out, maxBytes);
  return cutUtf8(out, room) + note;
}

/** The longest prefix of `s` whose UTF-8 encoding takes at most `maxBytes`. */
export function cutUtf8(s: string, maxBytes: number): string {
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length <= maxBytes) return s;
  let end = Math.max(0, maxBytes);
  // Back off from the middle of a multi-byte character.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}
