/**
 * `keel generate`: the group of code generators.
 */
import { defineCommand } from '../command.js';

export default defineCommand({
  meta: {
    name: 'generate',
    alias: 'g',
    description: 'Generate code in the current application',
    examples: ['keel generate module billing', 'keel generate module billing --depends-on orders --dry-run'],
  },
  subCommands: {
    module: () => import('./generate-module.js').then((loaded) => loaded.default),
  },
});
