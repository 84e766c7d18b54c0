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

/** Parses a size string into bytes, or returns an explanation of why it is not one. */
export function parseSize(text: string): number | string {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) {
    return /^\s*-/.test(text)
      ? `'${text}' is negative`
      : `'${text}' is not a size (examples: 700MiB, 3GiB, 512M)`;
  }
  const factor = UNITS[(m[2] ?? '').toLowerCase()];
  if (factor === undefined)
    return `'${text}' has an unknown unit '${m[2]}' (use B, KiB, MiB, GiB, TiB)`;
  return Math.round(Number(m[1]) * factor);
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
