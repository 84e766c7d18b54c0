/**
 * The fault campaign's bad inputs (issue 21), in CI: every one refused by the real CLI or action
 * before any TCP connection, by a message that names the input, with no key line printed or left.
 */
import { rmSync } from 'node:fs';
import {
  badInputs,
  campaignFiles,
  countingListener,
  runBadInput,
  type CountingListener,
} from '../helpers/faults/bad-inputs';

jest.setTimeout(120_000);
const files = campaignFiles();
let listener: CountingListener;
beforeAll(async () => {
  listener = await countingListener();
});
afterAll(async () => {
  await listener?.close();
  rmSync(files.dir, { recursive: true, force: true });
});

describe('bad inputs', () => {
  const cases = badInputs(files);
  it('are at least 30, across the CLI and the action', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
    expect(cases.some((c) => c.entry === 'action')).toBe(true);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });
  it.each(cases.map((c) => [`${c.entry}: ${c.name}`, c] as const))(
    '%s: refused before any connection, naming the input',
    async (_name, c) => {
      const r = await runBadInput(c, listener, files);
      expect({ message: r.message, code: r.code }).toMatchObject({
        code: expect.not.stringMatching(/^0$/),
      });
      expect(r.code).not.toBe(0);
      expect(r.connections).toBe(0);
      expect(r.message).toContain(c.names);
      expect(r.namesInput).toBe(true);
      expect(r.keyLeaked).toBe(false);
    },
  );
  it('the listener does count a connection (the count could fail)', async () => {
    const before = listener.connections();
    const r = await runBadInput(
      {
        name: 'a valid probe',
        entry: 'cli probe',
        inputs: { 'connect-retries': '0', 'connect-timeout': '2' },
        names: 'target',
      },
      listener,
      files,
    );
    expect(r.connections).toBeGreaterThan(0);
    expect(listener.connections()).toBeGreaterThan(before);
  });
});
