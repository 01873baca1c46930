/**
 * `keel contracts`: the group of contract-compatibility commands.
 */
import { defineCommand } from '../command.js';

export default defineCommand({
  meta: {
    name: 'contracts',
    description: 'Record contracts in contracts.lock.json and check changes against it',
    examples: ['keel contracts snapshot', 'keel contracts diff'],
  },
  subCommands: {
    snapshot: () => import('./contracts-snapshot.js').then((loaded) => loaded.default),
    diff: () => import('./contracts-diff.js').then((loaded) => loaded.default),
  },
});
