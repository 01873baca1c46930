/**
 * A keyed call to a module whose database is away (its network cut): the key cannot be claimed,
 * so nothing ran, and the caller must hear UNAVAILABLE (not delivered: safe to retry, with the
 * same key) rather than INTERNAL (which no retry policy retries). Once the database is back, the
 * same key runs the operation once. In one process and over NATS.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { isKeelError } from 'keel';
import { tally, tallyInMemory, tallyWithData } from './fixtures/idempotency/modules.js';
import { cutDatabaseRig } from './support/cut-database.js';

const rig = cutDatabaseRig('unreach');
afterAll(() => rig.close());

describe.each(Object.entries(rig.vias))('idempotency - a keyed call whose module cannot reach its database, %s', (_name, transportOf) => {
  it('is UNAVAILABLE saying nothing ran, and the same key runs the operation once when the database is back', { timeout: 60_000 }, async () => {
    const { proxy, caller } = await rig.start(transportOf, { served: tallyWithData, elsewhere: tallyInMemory });
    const client = caller.client(tally);
    const key = randomUUID();

    await proxy.cut();
    const refused = await client.bump({ by: 1 }, { idempotencyKey: key, retry: false, timeoutMs: 10_000 }).catch((caught: unknown) => caught);
    expect(isKeelError(refused, 'UNAVAILABLE'), String(refused)).toBe(true);
    expect((refused as Error).message).toContain('tally.bump: the module could not reach its database to claim idempotency key');
    expect((refused as Error).message).toContain('Nothing ran; retry later with the same key');
    // The database's own error (its address, its host name) stays in the callee's logs: the answer may reach an HTTP client.
    expect((refused as Error).message).not.toMatch(/ECONN|127\.0\.0\.1|Connection terminated|timeout exceeded/);

    await proxy.open();
    expect(await client.bump({ by: 1 }, { idempotencyKey: key, retry: false, timeoutMs: 10_000 })).toEqual({ count: 1 });
    // The key holds the outcome: the same request again is a replay, not a second run.
    expect(await client.bump({ by: 1 }, { idempotencyKey: key, retry: false, timeoutMs: 10_000 })).toEqual({ count: 1 });
  });
});
