import type { Reporter, TestModule, TestRunEndReason } from 'vitest/node';

/**
 * Prints one machine-greppable line at the very end of a run:
 *   `N passed, N failed[, N skipped]`
 * A file that failed to load/collect, or a suite whose hooks failed without
 * any test being marked failed, counts as one failure, as does each unhandled
 * error, so a broken run never reports `0 failed`.
 */
export default class CountReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>, reason: TestRunEndReason): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const mod of modules) {
      let failedHere = 0;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failedHere++;
        else if (state === 'skipped') skipped++;
      }
      const brokenSuites = [mod, ...mod.children.allSuites()].filter((s) => s.errors().length > 0).length;
      if (failedHere === 0 && (brokenSuites > 0 || mod.state() === 'failed')) failedHere = Math.max(1, brokenSuites);
      failed += failedHere;
    }
    failed += unhandledErrors.length;
    if (failed === 0 && reason === 'failed') failed = 1;

    const line = `${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : '');
    process.stdout.write(`\n${line}\n`);
  }
}
