/**
 * `keel generate module <name>`: writes a module folder (contract, implementation), its test,
 * and registers it in the manifest.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { contextOf, defineCommand } from '../command.js';
import { planModule, shownPath, writePlan } from '../generate.js';
import { findProject } from '../project.js';

export default defineCommand({
  meta: {
    name: 'module',
    description: 'Generate a module: contract.ts, module.ts and a test, registered in the manifest',
    examples: [
      'keel generate module billing',
      'keel generate module billing --depends-on orders,payments --events invoiceSent,invoicePaid',
      'keel generate module billing --operations sendInvoice,getInvoice',
      'keel generate module mailer --subscribes-to billing',
      'keel generate module billing --data',
      'keel generate module billing --dry-run',
    ],
  },
  args: {
    name: { type: 'positional', description: 'Module name, lower-kebab-case (such as order-history)', required: true },
    'depends-on': { type: 'string', description: 'Modules it calls, comma-separated', valueHint: 'a,b' },
    events: { type: 'string', description: 'Events it publishes, camelCase, comma-separated', valueHint: 'a,b' },
    operations: { type: 'string', description: 'Its operations, camelCase, comma-separated (default: a placeholder hello)', valueHint: 'a,b' },
    'subscribes-to': { type: 'string', description: "Modules whose events it handles, comma-separated: a handler stub per event", valueHint: 'a,b' },
    data: { type: 'boolean', description: 'It owns data: its own schema, made by migrations/001_<name>.sql, reached through db' },
    'dry-run': { type: 'boolean', description: 'Show the files without writing anything' },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const project = findProject(cli.cwd);
    const plan = await planModule(project, {
      name: args.name,
      dependsOn: args['depends-on'],
      events: args.events,
      operations: args.operations,
      subscribesTo: args['subscribes-to'],
      data: args.data,
    });
    const out = (line = '') => cli.stdout.write(`${line}\n`);
    if (args['dry-run']) {
      out(`Would generate module ${plan.name} (dry run: nothing written):`);
      for (const file of plan.files) {
        out(`\n--- ${file.action === 'create' ? 'create' : 'update'} ${shownPath(project, file.path)}${file.note ? ` (${file.note})` : ''}`);
        const shown = file.action === 'create' ? file.content : addedLines(file.before ?? '', file.content);
        cli.stdout.write(shown.endsWith('\n') ? shown : `${shown}\n`);
      }
      return;
    }
    writePlan(plan);
    out(`Generated module ${plan.name}:`);
    for (const file of plan.files) {
      out(`  ${file.action === 'create' ? 'created' : 'updated'} ${shownPath(project, file.path)}${file.note ? `  (${file.note})` : ''}`);
    }
    out('');
    const test = plan.files.find((file) => file.path.endsWith('-contract.test.ts'));
    const tables = plan.files.some((file) => file.path.endsWith('.sql')) ? ' its tables in migrations/ (a new file for each change),' : '';
    out(
      `Next: describe its operations in contract.ts,${tables} implement them in module.ts, then run them with ` +
        `\`npx vitest run ${test ? shownPath(project, test.path) : ''}\`. Once its contract is settled, record it with ` +
        '`keel contracts snapshot`: `keel contracts diff` guards only the contracts its lock holds.',
    );
    const listing = topologiesNamingTheirModules(project.root, plan.name);
    if (listing.length > 0) {
      out(
        `Then give it a process in ${listing.join(', ')}, which name their processes' modules: keel up, keel dev and keel deploy ` +
          `refuse a module no process hosts (a process of modules: ['*'] takes every module the others do not name).`,
      );
    }
  },
});

/**
 * The topology files under `topologies/` that list their processes' modules by name (no
 * `modules: ['*']`) and do not name `module`, so it has no process there until one does. Read as
 * text: a hint, not a check; a file it cannot read is left out.
 */
function topologiesNamingTheirModules(root: string, module: string): string[] {
  const folder = join(root, 'topologies');
  let names: string[];
  try {
    names = readdirSync(folder).filter((name) => /\.(m?[jt]s|json)$/.test(name) && !/\.(d|test|spec)\.m?[jt]s$/.test(name)).sort();
  } catch {
    return [];
  }
  const everyOther = /["']?modules["']?\s*:\s*\[\s*["']\*["']\s*\]/;
  return names
    .filter((name) => {
      try {
        const text = readFileSync(join(folder, name), 'utf8');
        return /\bprocesses\b/.test(text) && !everyOther.test(text) && !text.includes(`'${module}'`) && !text.includes(`"${module}"`);
      } catch {
        return false;
      }
    })
    .map((name) => `topologies/${name}`);
}

/** The lines of `after` that `before` does not have, each prefixed with `+ `. */
function addedLines(before: string, after: string): string {
  const old = new Set(before.split('\n'));
  return after
    .split('\n')
    .filter((line) => !old.has(line))
    .map((line) => `+ ${line}`)
    .join('\n');
}
