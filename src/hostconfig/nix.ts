/** Writing Nix values as text. Values are checked before they get here; escaping is the second fence. */

/** A Nix double-quoted string literal: `\`, `"` and `${` escaped, control characters refused. */
export function nixString(value: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value))
    throw new Error(`internal: control character in a Nix string: ${JSON.stringify(value)}`);
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$\{/g, '\\${')}"`;
}

/** A list of strings: one line when short, else one element per line at the given indent. */
export function nixStringList(values: readonly string[], indent: string): string {
  if (values.length === 0) return '[ ]';
  const items = values.map(nixString);
  const oneLine = `[ ${items.join(' ')} ]`;
  if (oneLine.length + indent.length <= 90) return oneLine;
  return `[\n${items.map((v) => `${indent}  ${v}`).join('\n')}\n${indent}]`;
}

/** A `# …` comment block, one `#` line per line of text. */
export function nixComment(text: string, indent = ''): string {
  // Nix ends a comment at \r too: what followed would be code.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f\u007f]/.test(text))
    throw new Error(`internal: control character in a Nix comment: ${JSON.stringify(text)}`);
  return text
    .split('\n')
    .map((l) => (l ? `${indent}# ${l}` : `${indent}#`))
    .join('\n');
}
