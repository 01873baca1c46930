/**
 * keel's headers as a plain NATS client sends them (docs/wire-protocol.md): for the tests that
 * publish an event or make a request with the nats client itself, as a foreign client or a forger
 * would, rather than through a keel transport. The tests of keel's header readers, which need
 * blocks no client writes, build their bytes by hand instead (test/support/raw-nats.ts).
 */
import { headers, type MsgHdrs } from '@nats-io/transport-node';

/**
 * The five headers keel sends with every event of `publisher`'s contract (version 1.0.0): event
 * id `id`, correlation id `correlation-<id>`, published now; `extra` adds headers or replaces
 * any of them.
 *
 * @example
 * ```ts
 * nc.publish('keel.ledger.events.posted', body, { headers: natsHeaders(keelEventHeaders('ledger', 'e-1')) });
 * ```
 */
export function keelEventHeaders(publisher: string, id: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'Keel-Contract-Version': '1.0.0',
    'Keel-Event-Id': id,
    'Keel-Correlation-Id': `correlation-${id}`,
    'Keel-Publisher': publisher,
    'Keel-Published-At': String(Date.now()),
    ...extra,
  };
}

/**
 * The nats client's header object holding `values`, set in their order.
 *
 * @example
 * ```ts
 * await nc.request('keel.inventory.onHand', body, { headers: natsHeaders({ 'Keel-Contract-Version': '1.0.0' }), timeout: 5_000 });
 * ```
 */
export function natsHeaders(values: Record<string, string>): MsgHdrs {
  const result = headers();
  for (const [key, value] of Object.entries(values)) result.set(key, value);
  return result;
}
