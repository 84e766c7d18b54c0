/** `--facts FILE`: a file that is not complete facts is refused by name, not a TypeError later. */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkFacts, loadFacts } from '../../src/cli/facts-file';
import { InputError } from '../../src/errors';
import { parseFacts } from '../../src/probe/facts';

const dir = mkdtempSync(join(tmpdir(), 'vps-nixos-facts-'));
const FIXTURE = join(__dirname, '../fixtures/preflight/facts-debian-12-1gb-static.json');
const good = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, unknown>;
let n = 0;
function file(content: unknown): string {
  const path = join(dir, `facts-${n++}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}
function refusal(path: string): InputError {
  try {
    loadFacts(path);
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).input).toBe('facts');
    return e as InputError;
  }
  throw new Error(`${path} was accepted`);
}
const without = (...keys: string[]) =>
  Object.fromEntries(Object.entries(good).filter(([k]) => !keys.includes(k)));

describe('loadFacts', () => {
  it('reads bare facts, `probe --json` output and facts.sh output', () => {
    expect(loadFacts(file(good))).toEqual(good);
    expect(loadFacts(file({ facts: good, plan: null }))).toEqual(good);
    const text = readFileSync(join(__dirname, '../fixtures/facts/debian-12-kvm.txt'), 'utf8');
    expect(loadFacts(file(text))).toEqual(parseFacts(text));
  });
  it('keeps fields it does not know (a newer vps-nixos wrote them)', () => {
    expect(loadFacts(file({ ...good, somethingNew: 1 }))).toMatchObject({ somethingNew: 1 });
  });
  it('names each missing field the plan and the pipeline read', () => {
    const e = refusal(file(without('memTotalBytes', 'virtualization', 'isNixos', 'osId', 'arch')));
    expect(e.message).toMatch(/is not complete facts: lacks /);
    for (const k of ['memTotalBytes', 'virtualization', 'isNixos', 'osId', 'arch'])
      expect(e.message).toContain(k);
    expect(e.fix).toMatch(/vps-nixos probe … --json > facts\.json/);
  });
  it.each([
    'memTotalBytes',
    'swapTotalBytes',
    'virtualization',
    'isContainer',
    'osId',
    'isNixos',
    'isInstaller',
    'arch',
    'kernel',
    'bootId',
    'efi',
    'disks',
    'interfaces',
    'routes',
    'dns',
    'tools',
  ])('refuses facts without %s', (key) => {
    expect(refusal(file(without(key))).message).toMatch(new RegExp(`lacks ${key}$`));
  });
  it('names fields of the wrong type, down into the lists', () => {
    const disks = good.disks as Record<string, unknown>[];
    const e = refusal(
      file({
        ...good,
        memTotalBytes: '1G',
        isNixos: 'no',
        disks: [{ ...disks[0], sizeBytes: undefined }],
        interfaces: [
          { name: 'eth0', addresses: [{ family: 'ipx', address: 'x', prefixLength: 1 }] },
        ],
      }),
    );
    expect(e.message).toContain('memTotalBytes is not a number');
    expect(e.message).toContain('isNixos is not a boolean');
    expect(e.message).toContain('lacks disks[0].sizeBytes');
    expect(e.message).toMatch(/interfaces\[0\]\.addresses\[0\]\.family/);
  });
  it('lists a dozen problems, then counts the rest', () => {
    const e = refusal(file({ ...good, dns: Array.from({ length: 40 }, () => 1) }));
    expect(e.message).toMatch(/dns\[11\] is not a string … and 28 more$/);
  });
  it('checks optional facts when they are there', () => {
    expect(refusal(file({ ...good, infect: 'yes' })).message).toContain('infect is not an object');
    expect(loadFacts(file(without('root', 'tmp', 'varTmp', 'rootDisk')))).toBeDefined();
  });
  it('says when a saved run holds no facts', () => {
    expect(refusal(file({ facts: null, error: 'x' })).message).toMatch(
      /has no facts: the run that saved it did not probe/,
    );
    expect(refusal(file('[]')).message).toMatch(/holds no facts object/);
    expect(refusal(file('42')).message).toMatch(/holds no facts object/);
  });
  it('says what is wrong with a file that is neither', () => {
    expect(refusal(file('hello')).message).toMatch(/neither JSON nor facts\.sh output/);
    expect(refusal(file('facts.version=1\narch=x86_64\n')).message).toMatch(/MemTotal/);
    expect(refusal(join(dir, 'missing.json')).message).toMatch(/cannot read .*ENOENT/);
  });
  it('is what checkFacts does to a parsed document', () => {
    expect(checkFacts(good, 'x.json')).toBe(good);
    expect(() => checkFacts({}, 'x.json')).toThrow(/lacks memTotalBytes, swapTotalBytes/);
  });
});
