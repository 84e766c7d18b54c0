import { formatTarget, namesPort, parseTarget } from '../../src/target';
import { formatBytes, parseSize } from '../../src/size';

describe('parseTarget', () => {
  it.each([
    [
      'root@203.0.113.7',
      { user: 'root', host: '203.0.113.7', port: 22, knownHostsName: '203.0.113.7' },
    ],
    [
      '203.0.113.7:2222',
      { user: 'root', host: '203.0.113.7', port: 2222, knownHostsName: '[203.0.113.7]:2222' },
    ],
    [
      'deploy@[2001:db8::1]',
      { user: 'deploy', host: '2001:db8::1', port: 22, knownHostsName: '2001:db8::1' },
    ],
    [
      'root@[2001:db8::1]:22022',
      { user: 'root', host: '2001:db8::1', port: 22022, knownHostsName: '[2001:db8::1]:22022' },
    ],
    [
      'root@vps-1.example.org',
      { user: 'root', host: 'vps-1.example.org', port: 22, knownHostsName: 'vps-1.example.org' },
    ],
  ])('%s', (text, expected) => {
    expect(parseTarget(text)).toEqual(expected);
    expect(parseTarget(formatTarget(expected))).toEqual(expected);
  });
  it.each([
    'root@',
    'root@1.2.3.4.5',
    'root@[::1',
    'root@host:',
    'root@host:abc',
    'root@-bad-.com',
    '@host',
  ])('rejects %s', (text) => {
    expect(typeof parseTarget(text)).toBe('string');
  });
});

describe('namesPort', () => {
  it.each([
    ['root@host:22', true],
    ['host:2222', true],
    ['root@[2001:db8::1]:22', true],
    ['root@host', false],
    ['host', false],
    ['root@[2001:db8::1]', false],
    ['root@2001:db8::1', false],
  ])('%s: %s', (text, expected) => expect(namesPort(text)).toBe(expected));
});

describe('parseSize', () => {
  it.each([
    ['700MiB', 700 * 2 ** 20],
    ['1GiB', 2 ** 30],
    ['1.5G', 1.5 * 2 ** 30],
    ['512M', 512 * 2 ** 20],
    ['3GB', 3e9],
    ['4096', 4096],
    ['0', 0],
    ['0.0', 0],
    ['2.2GB', 2.2e9],
    ['0.1G', 107374182], // 107374182.4 bytes: a fraction of a unit is rounded to the byte
    ['0.0001G', 107374], // 107374.1824
    ['0.001K', 1], // 1.024
    ['0003MiB', 3 * 2 ** 20],
    [`${'0'.repeat(400)}1`, 1],
    ['9007199254740991', Number.MAX_SAFE_INTEGER],
    ['8191TiB', 8191 * 2 ** 40],
  ])('%s', (text, bytes) => expect(parseSize(text)).toBe(bytes));
  it('rejects negatives and junk', () => {
    expect(parseSize('-1G')).toMatch(/negative/);
    expect(parseSize('-0')).toMatch(/negative/);
    expect(parseSize('1 furlong')).toMatch(/unit/);
    expect(parseSize('1e9')).toMatch(/not a size/);
    expect(parseSize('Infinity')).toMatch(/not a size/);
    expect(parseSize('')).toMatch(/not a size/);
  });
  it('never returns Infinity or a number that is not exact', () => {
    expect(parseSize('9'.repeat(400))).toMatch(/too large/);
    expect(parseSize(`${'9'.repeat(400)}GiB`)).toMatch(/too large/);
    expect(parseSize('9007199254740992')).toMatch(/too large/);
    expect(parseSize('8192TiB')).toMatch(/below 8 PiB/);
  });
  it('refuses a fraction of a byte instead of making it 0 (or rounding bytes)', () => {
    expect(parseSize('0.0001')).toMatch(/not a whole number of bytes/);
    expect(parseSize('0.5B')).toMatch(/not a whole number of bytes/);
    expect(parseSize('1.5')).toMatch(/not a whole number of bytes/);
    expect(parseSize('0.0001KiB')).toMatch(/less than one byte/);
    expect(parseSize('0.0000000001GiB')).toMatch(/less than one byte/);
  });
  it('formats', () => expect(formatBytes(960 * 2 ** 20)).toBe('960.0 MiB'));
});
