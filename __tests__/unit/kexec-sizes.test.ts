/** The kexec installer's sizes, read from the tarball's member headers and its build's sizes.env. */
import { kexecSizes, parseSizesEnv, parseTarListing } from '../../src/nix/kexec';

// `LC_ALL=C tar -tvf` (GNU tar 1.34) of a tarball in the nixos-images layout.
const LISTING = `drwxr-xr-x 0/0               0 1970-01-01 00:00 kexec/
-rwxr-xr-x 0/0         1351848 1970-01-01 00:00 kexec/ip
-rw-r--r-- 0/0        12865536 1970-01-01 00:00 kexec/bzImage
-rw-r--r-- 0/0        63963136 1970-01-01 00:00 kexec/initrd
-rwxr-xr-x 0/0          344176 1970-01-01 00:00 kexec/kexec
-rwxr-xr-x root/root      9021 2024-05-01 12:00 kexec/run
`;

describe('parseTarListing', () => {
  it('reads names, kinds and sizes; strips ./ and link targets', () => {
    const m = parseTarListing(
      LISTING + 'lrwxrwxrwx 0/0 0 1970-01-01 00:00:01 ./kexec/initrd.old -> initrd\n',
    );
    expect(m.find((x) => x.name === 'kexec/initrd')).toEqual({
      name: 'kexec/initrd',
      kind: '-',
      bytes: 63963136,
    });
    expect(m.find((x) => x.name === 'kexec/run')?.bytes).toBe(9021);
    expect(m.at(-1)).toEqual({ name: 'kexec/initrd.old', kind: 'l', bytes: 0 });
  });
});

describe('kexecSizes', () => {
  const members = parseTarListing(LISTING);
  it('takes kernel and initrd from the headers', () => {
    expect(kexecSizes(members)).toEqual({
      sizes: { kernelBytes: 12865536, initrdBytes: 63963136 },
    });
  });
  it('takes the unpacked size from a sizes.env that describes this tarball only', () => {
    const env = parseSizesEnv(
      'TARBALL=x.tar.gz\nINITRD_BYTES=63963136\nKERNEL_BYTES=12865536\nINITRD_UNPACKED_BYTES=201326592\n',
    );
    expect(kexecSizes(members, env).sizes?.initrdUnpackedBytes).toBe(201326592);
    const stale = { ...env, INITRD_BYTES: '1' };
    expect(kexecSizes(members, stale).sizes?.initrdUnpackedBytes).toBeUndefined();
    const noUnpacked = { INITRD_BYTES: '63963136' };
    expect(kexecSizes(members, noUnpacked).sizes?.initrdUnpackedBytes).toBeUndefined();
  });
  it("takes what the installer's kernel and run can do from that sizes.env only", () => {
    const env = { INITRD_BYTES: '63963136', INITRAMFS_OPTIONS: 'yes', ROOTFS_RAMFS: 'yes' };
    expect(kexecSizes(members, env).sizes).toMatchObject({ rootfsGrows: true, rootfsRamfs: true });
    // nixos-images' run knows no VPS_NIXOS_ROOTFS: without the line, no ramfs root is offered
    const theirs = kexecSizes(members, { INITRD_BYTES: '63963136', INITRAMFS_OPTIONS: 'no' });
    expect(theirs.sizes?.rootfsRamfs).toBeUndefined();
    expect(theirs.sizes?.rootfsGrows).toBeUndefined();
    // a sizes.env of another tarball says nothing about this one
    const stale = kexecSizes(members, { ...env, INITRD_BYTES: '1' });
    expect(stale.sizes?.rootfsRamfs).toBeUndefined();
  });
  it('says what is missing from a tarball that is not a kexec installer', () => {
    expect(kexecSizes(members.filter((m) => m.name !== 'kexec/initrd')).problem).toMatch(
      /holds no kexec\/initrd as a regular file/,
    );
    expect(kexecSizes([]).problem).toMatch(/no kexec\/bzImage and kexec\/initrd/);
  });
});
