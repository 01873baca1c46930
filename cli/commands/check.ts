/**
 * `keel check`: checks the architecture rules on the parsed source — module boundaries,
 * dependency and import cycles, undeclared dependencies, kernel/adapter layering — and loads
 * every contract so that `defineContract` refuses schemas that cannot cross a process.
 */
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { formatCheckReport, runCheck } from '../tooling/check.js';
import { ROOT_ARG, importerFor, projectAt } from '../tooling/command-support.js';

export default defineCommand({
  meta: {
    name: 'check',
    description: 'Check module boundaries, cycles, declared dependencies, layering and contract schemas',
    examples: ['keel check', 'keel check --json'],
  },
  args: {
    json: { type: 'boolean', description: 'Print the report as JSON (for tools); the exit code is the same', default: false },
    root: ROOT_ARG,
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const project = projectAt(cli.cwd, args.root);
    const report = await runCheck(project.root, { importFile: importerFor(project) });
    cli.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : formatCheckReport(report));
    if (!report.ok) {
      const count = report.violations.length;
      throw new CLIError(CliErrorCode.E_CHECK, `${count} architecture problem${count === 1 ? '' : 's'} found.`, {
        hint: 'Each one above names the file, the line and what to do; run `keel check` again once fixed.',
      });
    }
  },
});
