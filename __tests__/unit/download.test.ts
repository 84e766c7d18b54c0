/**
 * The downloader's pure parts: how a URL is shown (never its token), which URLs may be fetched at
 * all (https, or http with a sha256), and which redirects are followed (never https to http).
 */
import { InputError } from '../../src/errors';
import { checkDownloadUrl, displayUrl, redirectTarget } from '../../src/net/download';

const subject = (url: string, sha256?: string) => ({
  url,
  sha256,
  input: 'thing-url',
  sha256Input: 'thing-sha256',
});
const SHA = 'ab'.repeat(32);

describe('displayUrl', () => {
  it('returns a URL without secrets unchanged', () => {
    expect(displayUrl('https://example.org/a/b.tar.gz')).toBe('https://example.org/a/b.tar.gz');
    expect(displayUrl('https://EXAMPLE.org')).toBe('https://EXAMPLE.org');
  });

  it('hides user info and query values, and drops the fragment', () => {
    expect(displayUrl('https://x-access-token:ghp_SECRET@github.com/o/r/f')).toBe(
      'https://***@github.com/o/r/f',
    );
    expect(displayUrl('https://ghp_SECRET@github.com/f')).toBe('https://***@github.com/f');
    expect(displayUrl('https://s3.example/b/k?X-Amz-Signature=SECRET&X-Amz-Expires=60')).toBe(
      'https://s3.example/b/k?X-Amz-Signature=***&X-Amz-Expires=***',
    );
    expect(displayUrl('https://example.org/f?SECRET#part')).toBe('https://example.org/f?***');
  });

  it('hides them in text that is not a URL too', () => {
    const shown = displayUrl('https://user:SECRET@[bad/f?token=SECRET');
    expect(shown).not.toContain('SECRET');
  });
});

describe('checkDownloadUrl', () => {
  it('accepts https with or without a sha256, and http with one', () => {
    expect(checkDownloadUrl(subject('https://example.org/f')).href).toBe('https://example.org/f');
    expect(checkDownloadUrl(subject('https://example.org/f', SHA)).protocol).toBe('https:');
    expect(checkDownloadUrl(subject('http://example.org/f', SHA.toUpperCase())).protocol).toBe(
      'http:',
    );
  });

  it('refuses http without a sha256, naming the sha256 input', () => {
    const err = (() => {
      try {
        checkDownloadUrl(subject('http://user:SECRET@example.org/f'));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).input).toBe('thing-sha256');
    expect((err as InputError).message).toContain('http://***@example.org/f');
    expect((err as InputError).message).not.toContain('SECRET');
    expect((err as InputError).fix).toMatch(/https/);
  });

  it('refuses other schemes, non-URLs and malformed hashes', () => {
    for (const url of ['ftp://example.org/f', 'file:///etc/passwd', 'not a url']) {
      expect(() => checkDownloadUrl(subject(url, SHA))).toThrow(/input 'thing-url'/);
    }
    expect(() => checkDownloadUrl(subject('https://example.org/f', 'abc'))).toThrow(
      /input 'thing-sha256': 'abc' is not a sha256/,
    );
  });
});

describe('redirectTarget', () => {
  const https = new URL('https://a.example/dir/f');
  const http = new URL('http://a.example/dir/f');

  it('resolves relative and absolute locations', () => {
    expect((redirectTarget(https, 'g') as URL).href).toBe('https://a.example/dir/g');
    expect((redirectTarget(https, '/x') as URL).href).toBe('https://a.example/x');
    expect((redirectTarget(https, 'https://b.example/y') as URL).href).toBe('https://b.example/y');
  });

  it('follows http to http and http to https', () => {
    expect((redirectTarget(http, 'http://b.example/y') as URL).protocol).toBe('http:');
    expect((redirectTarget(http, 'https://b.example/y') as URL).protocol).toBe('https:');
  });

  it('never follows https to http', () => {
    expect(redirectTarget(https, 'http://a.example/dir/f')).toEqual({
      reason: 'insecure-redirect',
      why: 'it redirects to http://a.example/dir/f: https to plain http is never followed',
    });
  });

  it('refuses a missing Location and other schemes', () => {
    expect(redirectTarget(https, undefined)).toMatchObject({ reason: 'redirects' });
    expect(redirectTarget(https, 'file:///etc/passwd')).toMatchObject({ reason: 'redirects' });
    expect(redirectTarget(http, 'ftp://a.example/f')).toMatchObject({ reason: 'redirects' });
  });
});
