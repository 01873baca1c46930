/**
 * `keel build`: compiles the application to JavaScript in `dist/`, for `keel start` to run in
 * production with neither tsx nor TypeScript installed.
 */
import { relative } from 'node:path';
import { buildProject } from '../build.js';
import { contextOf, defineCommand } from '../command.js';
import { findProject } from '../project.js';

export default defineCommand({
  meta: {
    name: 'build',
    description: 'Compile the application (modules, topologies, entry files) to JavaScript in dist/',
    examples: ['keel build', 'keel build --out-dir build'],
  },
  args: {
    'out-dir': {
      type: 'string',
      description: 'Output folder (default: "keel.outDir" in package.json, else dist)',
      valueHint: 'dir',
    },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const started = performance.now();
    const project = findProject(cli.cwd);
    const result = await buildProject(project, { outDir: args['out-dir'] });
    const shown = relative(cli.cwd, result.outDir) || '.';
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    cli.stdout.write(`keel build: ${result.files} JavaScript files from ${result.sources.join(', ')} in ${shown}/ (${seconds} s)\n`);
    cli.stdout.write(`Next: \`npm ci --omit=dev\` where it runs, then \`keel start\` (it runs the build when the sources are not there; \`keel start --build\` where they are).\n`);
  },
});
