import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CheckRule, formatCheckReport, runCheck, type CheckRule as Rule } from '../cli/tooling/check.js';
import { runKeel, type CliRun } from './support/cli.js';

const repository = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/tooling/check/${name}/`, import.meta.url));

async function keel(argv: string[]): Promise<CliRun> {
  return runKeel(argv, { cwd: repository });
}

interface Planted {
  readonly fixture: string;
  readonly rule: Rule;
  readonly file: string;
  readonly line: number;
  /** Text the offending statement or chain must show. */
  readonly shows: string;
}

// Every fixture tree is the same two-module application with exactly one violation planted.
const planted: readonly Planted[] = [
  { fixture: 'deep-import', rule: CheckRule.DEEP_IMPORT, file: 'modules/beta/module.ts', line: 4, shows: "'../alpha/item-store.js'" },
  {
    fixture: 'dynamic-deep-import',
    rule: CheckRule.DEEP_IMPORT,
    file: 'modules/beta/module.ts',
    line: 13,
    shows: "import('../alpha/item-store.js')",
  },
  {
    fixture: 'reexport-smuggle',
    rule: CheckRule.CONTRACT_EXPOSES_INTERNALS,
    file: 'modules/alpha/contract.ts',
    line: 25,
    shows: "export { ItemStore } from './item-store.js';",
  },
  {
    fixture: 'module-imports-transport',
    rule: CheckRule.MODULE_IMPORTS_TRANSPORT_PORT,
    file: 'modules/beta/module.ts',
    line: 5,
    shows: "import { createLogger } from 'keel/transport';",
  },
  {
    fixture: 'module-imports-database-driver',
    rule: CheckRule.MODULE_IMPORTS_DATABASE_DRIVER,
    file: 'modules/beta/module.ts',
    line: 5,
    shows: "import pg from 'pg';",
  },
  { fixture: 'computed-import', rule: CheckRule.DYNAMIC_IMPORT, file: 'modules/beta/module.ts', line: 15, shows: 'import(`./helpers/${id}.js`)' },
  { fixture: 'dependency-cycle', rule: CheckRule.DEPENDENCY_CYCLE, file: 'modules/alpha/module.ts', line: 9, shows: 'alpha → beta → alpha' },
  {
    fixture: 'import-cycle',
    rule: CheckRule.IMPORT_CYCLE,
    file: 'modules/alpha/contract.ts',
    line: 3,
    shows: 'modules/alpha/contract.ts → modules/beta/contract.ts → modules/alpha/contract.ts',
  },
  {
    fixture: 'undeclared-import',
    rule: CheckRule.UNDECLARED_DEPENDENCY,
    file: 'modules/beta/module.ts',
    line: 3,
    shows: "import { AlphaMissing } from '../alpha/contract.js';",
  },
  { fixture: 'undeclared-get', rule: CheckRule.UNDECLARED_DEPENDENCY, file: 'modules/beta/module.ts', line: 11, shows: 'get(alpha)' },
  {
    fixture: 'kernel-imports-nats',
    rule: CheckRule.KERNEL_IMPORTS_ADAPTER,
    file: 'kernel/transport.ts',
    line: 2,
    shows: "import type { NatsConnection } from 'nats';",
  },
  {
    fixture: 'kernel-imports-http',
    rule: CheckRule.KERNEL_IMPORTS_ADAPTER,
    file: 'kernel/transport.ts',
    line: 2,
    shows: "import type { HttpGateway } from 'keel/http';",
  },
  {
    fixture: 'kernel-imports-adapter-path',
    rule: CheckRule.KERNEL_IMPORTS_ADAPTER,
    file: 'kernel/transport.ts',
    line: 2,
    shows: 'adapters/nats/index.ts',
  },
  {
    fixture: 'kernel-imports-package',
    rule: CheckRule.KERNEL_IMPORTS_PACKAGE,
    file: 'kernel/transport.ts',
    line: 6,
    shows: "import type { FastifyInstance } from 'fastify';",
  },
  {
    fixture: 'adapter-imports-kernel',
    rule: CheckRule.ADAPTER_IMPORTS_KERNEL_INTERNALS,
    file: 'adapters/nats/index.ts',
    line: 2,
    shows: "'../../kernel/transport.js'",
  },
  { fixture: 'invalid-contract', rule: CheckRule.INVALID_CONTRACT, file: 'modules/beta/contract.ts', line: 4, shows: 'beta.describe output.at' },
  { fixture: 'rethrown-error', rule: CheckRule.UNDECLARED_ERROR, file: 'modules/beta/module.ts', line: 19, shows: 'beta.describe rethrows AlphaMissing' },
  { fixture: 'rethrown-guarded', rule: CheckRule.UNDECLARED_ERROR, file: 'modules/beta/module.ts', line: 18, shows: 'beta.describe rethrows AlphaMissing' },
  {
    fixture: 'rethrown-error-promise',
    rule: CheckRule.UNDECLARED_ERROR,
    file: 'modules/beta/module.ts',
    line: 20,
    shows: 'beta.describe rethrows AlphaMissing',
  },
  {
    fixture: 'thrown-dependency-error',
    rule: CheckRule.UNDECLARED_ERROR,
    file: 'modules/beta/module.ts',
    line: 16,
    shows: 'throw new AlphaMissing({ id });',
  },
];

describe('tooling - check', () => {
  it('tooling - check passes the real repository', async () => {
    const report = await runCheck(repository);
    expect(report.violations).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.modules.length).toBeGreaterThan(0);
    expect(report.contractsLoaded).toBe(report.modules.length);
  });

  it('tooling - check passes the clean fixture, whose manifest imports module.ts files', async () => {
    const report = await runCheck(fixture('clean'));
    expect(report).toMatchObject({ ok: true, violations: [], modules: ['alpha', 'beta'], contractsLoaded: 2 });
  });

  it.each(planted)('tooling - check finds $rule in the $fixture fixture', async ({ fixture: name, rule, file, line, shows }) => {
    const report = await runCheck(fixture(name));
    expect(report.ok).toBe(false);
    expect(report.violations).toHaveLength(1);
    const [violation] = report.violations;
    expect(violation).toMatchObject({ rule, file, line });
    const shown = [violation?.code ?? '', violation?.message ?? '', ...(violation?.chain ?? [])].join('\n');
    expect(shown + (violation?.chain ? `\n${violation.chain.join(' → ')}` : '')).toContain(shows);
  });

  it('tooling - check accepts both remedies for a dependency error: declared by the operation, or mapped to its own', async () => {
    const report = await runCheck(fixture('error-remedies'));
    expect(report).toMatchObject({ ok: true, violations: [], contractsLoaded: 2 });
  });

  it('tooling - check says what a rethrown dependency error becomes and the two remedies', async () => {
    const text = formatCheckReport(await runCheck(fixture('rethrown-error')));
    expect(text).toContain('modules/beta/module.ts:19:13  undeclared-error\n  throw error;\n');
    expect(text).toContain(
      'beta.describe rethrows AlphaMissing (ALPHA_MISSING, declared by alpha.getItem), which describe does not declare: ' +
        'its callers would get INTERNAL (HTTP 500) instead. Either declare it in describe\'s errors ' +
        "(errors: [..., AlphaMissing] in modules/beta/contract.ts), or map it to an error of beta's own " +
        '(catch it and throw one that describe declares).',
    );
  });

  it('tooling - check names the file, line, rule and offending import in its human report', async () => {
    const text = formatCheckReport(await runCheck(fixture('deep-import')));
    expect(text).toContain('modules/beta/module.ts:4:1  deep-import');
    expect(text).toContain("import { ItemStore } from '../alpha/item-store.js';");
    expect(text).toContain('Only modules/alpha/contract.ts is public');
    expect(text.trim().split('\n').at(-1)).toBe('keel check: 1 problem (2 modules, 6 files, 2 contracts loaded).');
  });

  it('tooling - check reports the chain of a dependency cycle', async () => {
    const report = await runCheck(fixture('dependency-cycle'));
    expect(report.violations[0]?.chain).toEqual(['alpha', 'beta', 'alpha']);
  });

  it('tooling - check command exits 0 on the repository and 1 with E_CHECK on a violation', async () => {
    const clean = await keel(['check']);
    expect(clean).toMatchObject({ code: 0, stderr: '' });
    expect(clean.stdout).toMatch(/^keel check: no problems \(\d+ modules, \d+ files, \d+ contracts loaded\)\.$/m);

    const broken = await keel(['check', '--root', fixture('undeclared-import')]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain('modules/beta/module.ts:3:1  undeclared-dependency');
    expect(broken.stderr).toContain('error E_CHECK: 1 architecture problem found.');
  });

  it('tooling - check command prints JSON for tools', async () => {
    const { code, stdout } = await keel(['check', '--json', '--root', fixture('dependency-cycle')]);
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as { ok: boolean; violations: Array<{ rule: string; chain: string[] }> };
    expect(report.ok).toBe(false);
    expect(report.violations).toMatchObject([{ rule: 'dependency-cycle', chain: ['alpha', 'beta', 'alpha'] }]);
  });
});
