import { defineConfig } from 'vitest/config';
import CountReporter from './test/support/count-reporter.js';

export default defineConfig({
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2, // 2-core machine; tests also spawn real redis/nats servers
    reporters: ['default', new CountReporter()],
  },
});
