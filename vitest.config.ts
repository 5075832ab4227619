import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // e2e suites start real Envoy/portcullis processes on free ports; keep files isolated.
    pool: 'forks',
  },
});
