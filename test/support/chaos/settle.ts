/**
 * Waiting for a positive signal rather than a fixed time: the instances of a module have
 * worked through what they received once each answers `$SRV.STATS` (a request that queues behind
 * every message the instance already held) and their counts no longer move between two reads.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { InstanceStatus } from '../../../cli/tooling/status.js';
import type { ChaosShop } from './shop.js';

/**
 * Resolves with the instances of `module` once `count` of them answer and their request
 * counts are the same in two reads in a row (load stopped first). Throws after `timeoutMs`.
 *
 * @example
 * ```ts
 * await load.stop();
 * const instances = await quiescent(shop, 'catalog', 2);
 * ```
 */
export async function quiescent(shop: ChaosShop, module: string, count: number, timeoutMs = 30_000): Promise<readonly InstanceStatus[]> {
  const end = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const instances = await shop.instances(module).catch(() => []);
    const key = instances
      .map((instance) => `${instance.id}:${instance.requests}`)
      .sort()
      .join(',');
    if (instances.length === count && key === last) return instances;
    last = instances.length === count ? key : '';
    if (Date.now() > end) throw new Error(`${module}: ${instances.length} of ${count} instances answered $SRV.STATS, counts ${key || 'none'}, after ${timeoutMs} ms`);
    await sleep(250);
  }
}
