/**
 * CI runs this suite on more than one Node line (.ci/run, docs/ci.md). npm may itself run on
 * another Node than the one first on PATH, so CI sets KEEL_EXPECT_NODE to the major it asked for
 * and this checks, inside a test worker, that the tests really run on that line.
 */
import { describe, expect, it } from 'vitest';

const expected = process.env['KEEL_EXPECT_NODE'];

describe('node line', () => {
  it.skipIf(expected === undefined)(`node line - test workers run on Node ${expected ?? '(any: KEEL_EXPECT_NODE is not set)'}`, () => {
    expect(`${process.versions.node.split('.')[0]}`, `this worker runs ${process.execPath} (${process.version})`).toBe(expected);
  });
});
