import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts'],
    // Property tests run tens of thousands of cases; multi-process tests spawn real processes.
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Under CI, also write a JSON report so .ci/run can print a one-line count.
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: '.vitest-report.json' },
  },
});
