/** Unit tests are pure and fast; integration tests start real sshd/nix/VMs. */
const common = {
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  testEnvironment: 'node',
};
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/__tests__/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/__tests__/integration/**/*.test.ts'],
    },
    {
      ...common,
      displayName: 'vm',
      testMatch: ['<rootDir>/__tests__/vm/**/*.test.ts'],
    },
  ],
};
