/** Size strings like `700MiB`, `3GiB`, `512M`, `1.5G` or plain bytes. */

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** The largest size we take: bytes stay exact integers in a JavaScript number below it. */
const MAX_BYTES = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Parses a size string into a whole number of bytes, or returns an explanation of why it is not
 * one. Computed exactly (no float rounding, no Infinity): a fraction of a unit is rounded to the
 * nearest byte, but a size below one byte, or bytes with a fraction, are refused, never made 0.
 */
export function parseSize(text: string): number | string {
  const m = /^\s*(\d+)(?:\.(\d+))?\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) {
    return /^\s*-/.test(text)
      ? `'${text}' is negative`
      : `'${text}' is not a size (examples: 700MiB, 3GiB, 512M)`;
  }
  const [, whole = '0', frac = '', unit = ''] = m;
  const factor = UNITS[unit.toLowerCase()];
  if (factor === undefined)
    return `'${text}' has an unknown unit '${unit}' (use B, KiB, MiB, GiB, TiB)`;
  const digits = whole.replace(/^0+(?=\d)/, '');
  // More digits than any allowed size has: too large, without building a huge BigInt.
  if (digits.length > 17) return `'${text}' is too large (sizes must be below 8 PiB)`;
  const scale = 10n ** BigInt(frac.length);
  // bytes = scaled / scale, exactly
  const scaled = (BigInt(digits) * scale + BigInt(frac || '0')) * BigInt(factor);
  const bytes = scaled / scale;
  const rest = scaled % scale;
  if (rest !== 0n) {
    if (factor === 1) return `'${text}' is not a whole number of bytes`;
    if (bytes === 0n) return `'${text}' is less than one byte`;
  }
  const rounded = bytes + (rest * 2n >= scale ? 1n : 0n);
  if (rounded > MAX_BYTES) return `'${text}' is too large (sizes must be below 8 PiB)`;
  return Number(rounded);
}

/** Formats bytes for people: `960.0 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return i === 0 ? `${value} B` : `${value.toFixed(1)} ${units[i]}`;
}
