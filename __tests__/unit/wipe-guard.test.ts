/** confirm-wipe: nothing is wiped unless it names a whole disk of this host that the disk script formats. */
import { checkWipe, checkWipeLayout, diskDevicesIn } from '../../src/phases/wipe-guard';
import { shouldPatchUdevadm } from '../../src/phases/installer-prep';
import { lineStream } from '../../src/phases/phase';
import { InputError } from '../../src/errors';
import type { DiskFacts } from '../../src/probe/facts';

const GiB = 2 ** 30;
const vda: DiskFacts = {
  name: 'vda',
  path: '/dev/vda',
  sizeBytes: 4 * GiB,
  partitions: [{ name: 'vda1', path: '/dev/vda1', sizeBytes: 4 * GiB, mountpoint: '/' }],
};
const sdb: DiskFacts = { name: 'sdb', path: '/dev/sdb', sizeBytes: 20 * GiB, partitions: [] };
// What a disko destroy,format,mount script says about its disk (abridged from disko's output).
const DISKO = `
  device=/dev/vda
  sgdisk --new=1:0:+1M --partition-guid=1:R --typecode=1:EF02 /dev/vda
  mkfs.ext4 /dev/disk/by-partlabel/disk-main-root
  mount /dev/disk/by-partlabel/disk-main-root /mnt
  disk-deactivate /dev/vda
`;

const err = (fn: () => unknown): InputError => {
  try {
    fn();
  } catch (e) {
    return e as InputError;
  }
  throw new Error('did not throw');
};

describe('diskDevicesIn', () => {
  it('finds whole disks, leaves partitions and partlabels out', () => {
    expect(diskDevicesIn(DISKO)).toEqual({ disks: ['/dev/vda'], byId: [] });
    expect(diskDevicesIn('/dev/nvme0n1 /dev/nvme0n1p2 /dev/sda3 /dev/xvda').disks).toEqual([
      '/dev/nvme0n1',
      '/dev/xvda',
    ]);
    expect(
      diskDevicesIn('"/dev/disk/by-id/virtio-abc" /dev/disk/by-id/virtio-abc-part1').byId,
    ).toEqual(['/dev/disk/by-id/virtio-abc']);
  });
});

describe('checkWipe', () => {
  it('requires confirm-wipe, and lists the disks the probe found', () => {
    const e = err(() => checkWipe(undefined, [vda, sdb], DISKO));
    expect(e).toBeInstanceOf(InputError);
    expect(e.message).toMatch(/confirm-wipe.*required/);
    expect(e.fix).toMatch(/\/dev\/vda \(4\.0 GiB\), \/dev\/sdb \(20\.0 GiB\)/);
  });
  it('refuses a disk the host does not have', () => {
    expect(err(() => checkWipe('/dev/vdb', [vda], DISKO)).message).toMatch(
      /names \/dev\/vdb, which is not a disk of this host/,
    );
  });
  it('refuses a partition', () => {
    expect(err(() => checkWipe('/dev/vda1', [vda], DISKO)).message).toMatch(
      /a partition of \/dev\/vda/,
    );
  });
  it('refuses a disk of the host that the disk script does not format', () => {
    const e = err(() => checkWipe('/dev/sdb', [vda, sdb], DISKO));
    expect(e.message).toMatch(/names \/dev\/sdb, but the disk script formats \/dev\/vda/);
    expect(e.fix).toMatch(/disko\.devices\.disk\.<name>\.device = "\/dev\/sdb"/);
  });
  it('accepts the right disk, and warns when the script names its disk only by id', () => {
    expect(checkWipe('/dev/vda', [vda, sdb], DISKO)).toEqual({ disk: vda });
    expect(checkWipe('/dev/vda', [vda], '/dev/disk/by-id/virtio-x').warning).toMatch(
      /by id \(\/dev\/disk\/by-id\/virtio-x\): cannot check it is \/dev\/vda/,
    );
  });
});

describe('checkWipeLayout (before any connection: the disks the disko layout formats)', () => {
  const main = { name: 'main', device: '/dev/vda' };
  it('accepts the disk the layout formats; nothing to say without confirm-wipe or disks', () => {
    expect(checkWipeLayout('/dev/vda', [main])).toBeUndefined();
    expect(checkWipeLayout(undefined, [main])).toBeUndefined();
    expect(checkWipeLayout('/dev/vda', [])).toBeUndefined();
  });
  it('refuses a disk the layout does not name, naming both and the fixes', () => {
    const e = err(() => checkWipeLayout('/dev/sdb', [main]));
    expect(e).toBeInstanceOf(InputError);
    expect(e.message).toBe(
      "input 'confirm-wipe': names /dev/sdb, but the configuration's disko layout formats /dev/vda (disko.devices.disk.main)",
    );
    expect(e.fix).toMatch(/set confirm-wipe to \/dev\/vda/);
    expect(e.fix).toMatch(/disko\.devices\.disk\.main\.device = "\/dev\/sdb"/);
    expect(e.fix).toMatch(/leave confirm-wipe empty when nothing should be wiped/);
  });
  it('warns when the layout formats more disks than confirm-wipe names', () => {
    expect(checkWipeLayout('/dev/vda', [main, { name: 'data', device: '/dev/vdb' }])).toMatch(
      /also formats \/dev\/vdb \(disko\.devices\.disk\.data\): confirm-wipe names only \/dev\/vda/,
    );
  });
  it('cannot tell for disks named by id: a warning, the probe-time check decides', () => {
    expect(
      checkWipeLayout('/dev/vda', [{ name: 'main', device: '/dev/disk/by-id/virtio-abc' }]),
    ).toMatch(/names its disks by id or path/);
    expect(
      checkWipeLayout('/dev/disk/by-id/virtio-abc', [
        { name: 'main', device: '/dev/disk/by-id/virtio-abc' },
      ]),
    ).toBeUndefined();
  });
});

describe('shouldPatchUdevadm', () => {
  it('auto patches on virtual machines only; true/false win', () => {
    expect(shouldPatchUdevadm('auto', 'kvm')).toBe(true);
    expect(shouldPatchUdevadm('auto', 'none')).toBe(false);
    expect(shouldPatchUdevadm('true', 'none')).toBe(true);
    expect(shouldPatchUdevadm('false', 'kvm')).toBe(false);
  });
});

describe('lineStream', () => {
  it('logs whole lines across chunk boundaries, per stream, without key=value lines', () => {
    const lines: string[] = [];
    const on = lineStream((l) => lines.push(l));
    on('+ wipefs -a', 'stderr');
    on('f /dev/vda\nmnt=/dev/vda3', 'stderr');
    on('one\ntw', 'stdout');
    on('o\n', 'stdout');
    on('\n', 'stderr');
    expect(lines).toEqual(['+ wipefs -af /dev/vda', 'one', 'two']);
  });
});
