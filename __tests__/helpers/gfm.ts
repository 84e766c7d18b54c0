/**
 * What GitHub makes of a job summary, close enough to show remote text stays text. No Markdown
 * parser is installed, so these follow the rules of GitHub's renderer (github/cmark-gfm, its
 * autolink extension in extensions/autolink.c) where a link or an element could come from:
 *
 * - Raw HTML: `<` and a letter, `/`, `!` or `?` starts a tag, comment or declaration (CommonMark
 *   6.6), in a paragraph, a table cell or an HTML block alike.
 * - Links: `[text](url)`, `[text][ref]`, `[ref]: url` definitions, `![alt](src)` images, and
 *   `<scheme:…>` (which is raw HTML here).
 * - URL autolinks: found in the source (not in decoded entities) at a literal `:` followed by
 *   `//`, when the letters before it are exactly http, https or ftp and a host character follows.
 * - www autolinks: a literal `www.` at the start of a cell or line or after white space, `*`, `_`,
 *   `~` or `(`.
 * - Email autolinks: found after parsing, in each text node with entities decoded (an element
 *   such as `<wbr>` ends one): letters, digits and `.+-_` before an `@`, a domain with a `.`
 *   after it, ending in a letter or `.`.
 * - @mentions: GitHub links `@name` after a non-word character in a text node.
 */

/** Decodes the entities a summary uses: `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#NN;`, `&#xHH;`. */
export function decodeEntities(s: string): string {
  const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
  return s.replace(/&(?:#(\d+)|#x([0-9a-f]+)|(\w+));/gi, (m, dec, hex, name) =>
    dec
      ? String.fromCodePoint(Number(dec))
      : hex
        ? String.fromCodePoint(parseInt(hex, 16))
        : (named[(name as string).toLowerCase()] ?? m),
  );
}

/** Raw HTML a renderer would see: tags, comments, declarations, processing instructions. */
export function htmlTags(md: string): string[] {
  return [...md.matchAll(/<[A-Za-z/!?][^>\n]{0,200}>?/g)].map((m) => m[0]);
}

/** Link and image syntax: inline, full/collapsed references and reference definitions. */
export function linkSyntax(md: string): string[] {
  return [...md.matchAll(/\]\(|\]\[|^ {0,3}\[[^\]\n]+\]:/gm)].map((m) => m[0]);
}

const TAG = /<[A-Za-z/!?][^>]*>/g;

/** The text nodes, entities decoded: what the email and mention rules run on. */
export function textNodes(md: string): string[] {
  return md
    .split('\n')
    .flatMap((line) => line.split(TAG))
    .map(decodeEntities);
}

const alnum = (c: string | undefined) => c !== undefined && /[A-Za-z0-9]/.test(c);

/** cmark-gfm's email autolinks in one text node (postprocess_text). */
function emails(node: string): string[] {
  const out: string[] = [];
  for (let at = node.indexOf('@'); at >= 0; at = node.indexOf('@', at + 1)) {
    let rewind = 0;
    while (rewind < at && /[A-Za-z0-9.+_-]/.test(node[at - rewind - 1]!)) rewind++;
    if (rewind === 0 || node[at - rewind - 1] === '/') continue;
    const data = node.slice(at);
    let end = 0;
    let nb = 0;
    let np = 0;
    for (; end < data.length; end++) {
      const c = data[end]!;
      if (alnum(c)) continue;
      if (c === '@') nb++;
      else if (c === '.' && alnum(data[end + 1])) np++;
      else if (c !== '-' && c !== '_') break;
    }
    if (end < 2 || nb !== 1 || np === 0 || !/[A-Za-z.]/.test(data[end - 1]!)) continue;
    out.push(node.slice(at - rewind, at + end));
  }
  return out;
}

/** What GitHub would turn into a link that the source does not spell as one. */
export function autolinks(md: string): string[] {
  const found: string[] = [];
  for (const m of md.matchAll(/(?<![A-Za-z])(?:https?|ftp):\/\/(?![\s\p{P}])/giu))
    found.push(`url: ${md.slice(m.index, m.index + 40)}`);
  for (const m of md.matchAll(/(?:^|[\s*_~(|])www\./gm))
    found.push(`www: ${md.slice(m.index, m.index + 40)}`);
  for (const node of textNodes(md)) {
    found.push(...emails(node).map((e) => `email: ${e}`));
    for (const m of node.matchAll(/(?:^|[^\w`])@[A-Za-z0-9][A-Za-z0-9-]*/g))
      found.push(`mention: ${m[0]}`);
  }
  return found;
}

/** The summary as a reader sees its text: entities decoded, `<br>` a line break, no `<wbr>`. */
export function visibleText(md: string): string {
  return decodeEntities(md.replace(/<wbr>/g, '').replace(/<br>/g, '\n'));
}
