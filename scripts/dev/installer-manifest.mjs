// Writes src/release/installers.json: the kexec installers released with a version, their file
// names, sha256, sizes and the build's sizes.env. The release workflow runs it after building the
// installers and before `npm run build`, so the tagged dist/ carries the sha256 the action checks
// the download against (never a checksum fetched beside the asset).
//
//   node scripts/dev/installer-manifest.mjs --version 1.2.3 \
//     --base-url https://github.com/OWNER/vps-nixos/releases/download/v1.2.3 \
//     --installer x86_64-linux=result/nixos-kexec-installer-noninteractive-x86_64-linux.tar.gz \
//     [--installer aarch64-linux=…] [--out src/release/installers.json] [--assets DIR]
//
// A sizes.env beside an installer (our build writes one) goes into the manifest. --assets copies
// each installer into DIR under its released name, nixos-kexec-installer-SYSTEM.tar.gz.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const die = (msg) => {
  process.stderr.write(`installer-manifest: ${msg}\n`);
  process.exit(2);
};

const { values } = parseArgs({
  options: {
    version: { type: 'string' },
    'base-url': { type: 'string' },
    installer: { type: 'string', multiple: true, default: [] },
    out: { type: 'string', default: path.join(ROOT, 'src/release/installers.json') },
    assets: { type: 'string' },
  },
});
if (!values.version || !/^\d+\.\d+\.\d+([-+][\w.-]+)?$/.test(values.version))
  die('--version X.Y.Z is required (the package version the installers are released with)');
if (!values['base-url'] || !/^https:\/\/[^\s]+$/.test(values['base-url']))
  die('--base-url https://… is required (where the release assets are downloaded from)');
if (values.installer.length === 0) die('give at least one --installer SYSTEM=PATH');

/** `KEY=value` lines of a sizes.env (as src/nix/kexec.ts reads them). */
function sizesEnv(file) {
  const env = {};
  if (!fs.existsSync(file)) return env;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=["']?([^"'\s]*)["']?\s*$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  return env;
}

const installers = {};
for (const spec of values.installer) {
  const m = /^([a-z0-9_]+-linux)=(.+)$/.exec(spec);
  if (!m) die(`--installer ${spec}: want SYSTEM=PATH, e.g. x86_64-linux=result/….tar.gz`);
  const [, system, file] = m;
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) die(`--installer ${spec}: not a file`);
  const ext = /\.tar(\.gz|\.zst|\.xz)?$/.exec(file)?.[0];
  if (!ext) die(`--installer ${spec}: not a tarball (.tar, .tar.gz, .tar.zst, .tar.xz)`);
  const data = fs.readFileSync(file);
  const name = `nixos-kexec-installer-${system}${ext}`;
  installers[system] = {
    file: name,
    sha256: createHash('sha256').update(data).digest('hex'),
    bytes: data.length,
    sizes: sizesEnv(path.join(path.dirname(fs.realpathSync(file)), 'sizes.env')),
  };
  if (values.assets) {
    fs.mkdirSync(values.assets, { recursive: true });
    fs.copyFileSync(file, path.join(values.assets, name));
  }
}
const manifest = {
  version: values.version,
  baseUrl: values['base-url'].replace(/\/+$/, ''),
  installers,
};
fs.writeFileSync(values.out, `${JSON.stringify(manifest, null, 2)}\n`);
for (const [system, i] of Object.entries(installers))
  process.stdout.write(`${system} ${i.file} ${i.bytes} ${i.sha256}\n`);
