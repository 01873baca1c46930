/**
 * `keel new <dir>`: creates an application from the skeleton, with one starter module and its
 * test, and prints the next steps.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { planAgainst, writePlan } from '../generate.js';
import { assertGeneratedIdentifiers, assertModuleName } from '../names.js';
import { DEFAULT_PROJECT_SETTINGS, keelPackage, type Project } from '../project.js';
import {
  configFile,
  gitignoreFile,
  manifestFile,
  packageJsonFile,
  readmeFile,
  topologyFile,
  tsconfigFile,
  vitestConfigFile,
  type AppTemplateInput,
} from '../templates/app.js';

const PACKAGE_NAME = /^(?:@[a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/;

export default defineCommand({
  meta: {
    name: 'new',
    description: 'Create an application with one starter module',
    examples: ['keel new my-shop', 'keel new my-shop --module catalog', 'keel new my-shop --keel file:../keel-0.1.0.tgz'],
  },
  args: {
    dir: { type: 'positional', description: 'Folder to create (must not exist, or be empty)', required: true },
    name: { type: 'string', description: 'Package name (default: the folder name)' },
    module: { type: 'string', description: 'Name of the starter module', default: 'greeter' },
    keel: { type: 'string', description: 'keel dependency in package.json: a version range or file:<tarball>', valueHint: 'spec' },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const root = resolve(cli.cwd, args.dir);
    const name = args.name ?? basename(root);
    if (!PACKAGE_NAME.test(name) || name.length > 214) {
      throw new CLIError(
        CliErrorCode.E_INVALID_NAME,
        `"${name}" is not a valid npm package name (lower-case letters, digits, ".", "_" and "-").`,
        { hint: 'Pass --name my-app, or choose another folder name.' },
      );
    }
    const starter = assertGeneratedIdentifiers(assertModuleName(args.module, 'Starter module name'), 'Starter module name');
    if (existsSync(root) && readdirSync(root).length > 0) {
      throw new CLIError(CliErrorCode.E_TARGET_EXISTS, `${root} already exists and is not empty; choose a new folder.`);
    }
    const keel = keelPackage();
    const input: AppTemplateInput = {
      name,
      keelSpec: args.keel ?? `^${keel.version}`,
      nodeRange: keel.engines,
      starter,
      versions: {
        zod: keel.dependencies['zod'] ?? '^4.0.0',
        tsx: keel.devDependencies['tsx'] ?? '^4.0.0',
        typescript: keel.devDependencies['typescript'] ?? '^5.0.0',
        vitest: keel.devDependencies['vitest'] ?? '^4.0.0',
        typesNode: keel.devDependencies['@types/node'] ?? '^20.0.0',
        vite: keel.devDependencies['vite'] ?? '~8.3.8',
      },
    };
    const project: Project = {
      root,
      manifestPath: join(root, DEFAULT_PROJECT_SETTINGS.manifest),
      modulesDir: dirname(join(root, DEFAULT_PROJECT_SETTINGS.manifest)),
      testDir: join(root, DEFAULT_PROJECT_SETTINGS.testDir),
    };
    const skeleton: [string, string][] = [
      ['package.json', packageJsonFile(input)],
      ['tsconfig.json', tsconfigFile()],
      ['vitest.config.ts', vitestConfigFile()],
      ['README.md', readmeFile(input)],
      ['.gitignore', gitignoreFile()],
      [join('topologies', 'single.ts'), topologyFile(starter)],
      ['keel.config.ts', configFile()],
    ];
    const plan = await planAgainst(
      project,
      [],
      { name: starter, dependsOn: [], events: ['greeted'] },
      () => Promise.reject(new Error('the starter module has no dependencies')),
      manifestFile(),
    );
    const existed = existsSync(root);
    try {
      mkdirSync(root, { recursive: true });
      for (const [path, content] of skeleton) {
        mkdirSync(dirname(join(root, path)), { recursive: true });
        writeFileSync(join(root, path), content, { flag: 'wx' });
      }
      writePlan(plan);
    } catch (error) {
      if (existed) for (const entry of readdirSync(root)) rmSync(join(root, entry), { recursive: true, force: true });
      else rmSync(root, { recursive: true, force: true });
      throw error;
    }
    const shown = relative(cli.cwd, root) || '.';
    const out = (line = '') => cli.stdout.write(`${line}\n`);
    out(`Created ${name} in ${shown}, with the module ${starter}.`);
    out('');
    out('Next steps:');
    if (shown !== '.') out(`  cd ${shown}`);
    out('  npm install');
    out(`  npm test                                   # ${starter}'s tests, through its contract`);
    out('  npm start                                  # the application in one process, HTTP on port 3000');
    out('  npx keel generate module billing --depends-on ' + starter + '   # add a module');
  },
});
