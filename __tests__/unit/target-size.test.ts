import { formatTarget, parseTarget } from '../../src/target';
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

describe('parseSize', () => {
  it.each([
    ['700MiB', 700 * 2 ** 20],
    ['1GiB', 2 ** 30],
    ['1.5G', 1.5 * 2 ** 30],
    ['512M', 512 * 2 ** 20],
    ['3GB', 3e9],
    ['4096', 4096],
  ])('%s', (text, bytes) => expect(parseSize(text)).toBe(bytes));
  it('rejects negatives and junk', () => {
    expect(parseSize('-1G')).toMatch(/negative/);
    expect(parseSize('1 furlong')).toMatch(/unit/);
  });
  it('formats', () => expect(formatBytes(960 * 2 ** 20)).toBe('960.0 MiB'));
});
