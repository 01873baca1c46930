/**
 * What a process loads at start: the OpenTelemetry API once (its CommonJS build, the one
 * prom-client requires, rather than its ESM build beside it), and no jose until a bearer token
 * arrives. Each copy or library more is tens of milliseconds of every module process's start-up.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

function loadedBy(entries: readonly string[]): { esm: string[]; commonjs: string[] } {
  const output = execFileSync(
    process.execPath,
    ['--import', 'tsx', '--conditions=keel-source', join(root, 'test/support/loaded-modules.mjs'), ...entries],
    { cwd: root, encoding: 'utf8', timeout: 60_000 },
  );
  return JSON.parse(output.trim().split('\n').at(-1) as string) as { esm: string[]; commonjs: string[] };
}

describe('start-up - what a process loads', () => {
  it('start-up - keel, its HTTP gateway, NATS and databases doors load the OpenTelemetry API once, as CommonJS, and do not load jose', () => {
    const { esm, commonjs } = loadedBy(['keel', 'keel/http', 'keel/nats', 'keel/databases']);
    // The hook saw the doors load (keel's own sources, fastify's entry): the lists are real.
    expect(esm.some((url) => url.endsWith('/kernel/index.ts'))).toBe(true);
    expect(esm.some((url) => url.endsWith('/adapters/http/index.ts'))).toBe(true);
    expect(commonjs.some((file) => file.endsWith('/@opentelemetry/api/dist/index.cjs'))).toBe(true);
    expect(esm.filter((url) => url.includes('/@opentelemetry/api/'))).toEqual([]);
    expect([...esm, ...commonjs].filter((file) => file.includes('/node_modules/jose/'))).toEqual([]);
  });
});
