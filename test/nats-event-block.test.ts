/**
 * The subscriber reads a notification's header block in one pass when it is exactly what keel's
 * publisher writes (adapters/nats/event-block.ts), and the general way otherwise. Every block
 * below crosses a real nats-server (keel's own through `eventHeaders`, the others as raw `HPUB`s):
 * whenever the one-pass reader answers, its answer must be the general reader's
 * (`readEventHeaders(messageHeaders(msg))`), and for keel's own blocks it must answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventHeaders } from '../adapters/nats/headers.js';
import { generalEventReading } from './support/fuzz-messages.js';
import { readEventBlock } from '../adapters/nats/event-block.js';
import { startRawNats, type RawNats } from './support/raw-nats.js';

let nats: RawNats;

beforeAll(async () => {
  nats = await startRawNats('event.block');
});

afterAll(async () => {
  await nats?.close();
});

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

describe('readEventBlock', () => {
  it("reads every block keel's publisher writes, as the general reader does", async () => {
    const events = [
      { version: '1.0.0', id: '9f0c2e7a51b3d846-1k', correlationId: '9f0c2e7a51b3d846-1l', publishedAt: 1_796_000_000_000.4 },
      { version: '1.0.0', id: 'e-2', correlationId: 'c-2', publishedAt: 2, traceparent: TRACEPARENT },
      { version: '2.1.0-beta.1', id: 'e-3', correlationId: 'c-3', publishedAt: 3, principal: { sub: 'u 1', roles: ['a:b'] } },
      { version: '1.0.0', id: 'e-4', correlationId: 'c-4', publishedAt: 4, traceparent: TRACEPARENT, principal: { sub: 'caf\u00e9' } },
      { version: '1.0.0', id: 'e-5', correlationId: 'c-5', publishedAt: 5, traceparent: 'not a traceparent' },
      { version: '1.0.0', id: 'e-6', correlationId: 'c-6', publishedAt: 6, principal: 'x'.repeat(9_000) }, // refused as too long, alike
    ];
    for (const { version, id, correlationId, publishedAt, traceparent, principal } of events) {
      const event = { contract: 'orders', event: 'placed', version, delivery: 'notification', payload: {}, metadata: { id, correlationId, publisher: 'orders', publishedAt, traceparent, principal, attempt: 1 } };
      const msg = await nats.received((subject) => nats.nc.publish(subject, Buffer.from('{}'), { headers: eventHeaders(event as unknown as Parameters<typeof eventHeaders>[0]) }));
      const read = readEventBlock(msg, 1, 'orders');
      expect(read, id).toBeDefined();
      expect(read, id).toStrictEqual(generalEventReading(msg, 'orders'));
    }
  });

  const at = '1796000000000';
  const keel = (lines: string): string => `NATS/1.0\r\n${lines}\r\n`;
  const five = (version = '1.0.0', publisher = 'orders', time = at): string =>
    `Keel-Contract-Version: ${version}\r\nKeel-Event-Id: e-1\r\nKeel-Correlation-Id: c-1\r\nKeel-Publisher: ${publisher}\r\nKeel-Published-At: ${time}\r\n`;
  const blocks: [string, string | Uint8Array, boolean][] = [
    ["keel's five headers", keel(five()), true],
    ['a version seen for the first time', keel(five('3.2.1')), true],
    ['leading zeros in the time', keel(five('1.0.0', 'orders', '0001')), true],
    ['another publisher than the owner', keel(five('1.0.0', 'billing')), false],
    ['a version that is not semver', keel(five('one')), false],
    ['a time that is not a number', keel(five('1.0.0', 'orders', '17x')), false],
    ['a time of 16 digits', keel(five('1.0.0', 'orders', '1796000000000000')), false],
    ['a missing header', keel('Keel-Contract-Version: 1.0.0\r\nKeel-Event-Id: e-1\r\nKeel-Publisher: orders\r\nKeel-Published-At: 1\r\n'), false],
    ['headers in another order', keel('Keel-Event-Id: e-1\r\nKeel-Contract-Version: 1.0.0\r\nKeel-Correlation-Id: c-1\r\nKeel-Publisher: orders\r\nKeel-Published-At: 1\r\n'), false],
    ['a repeated header', keel(`${five()}Keel-Event-Id: e-2\r\n`), false],
    ['another header after them', keel(`${five()}X-Other: y\r\n`), false],
    ['lower-case keys', keel(five().toLowerCase()), false],
    ['spaces around a value', keel(five().replace('e-1', '  e-1 ')), false],
    ['a tab in a value', keel(five().replace('e-1', 'e\t1')), false],
    ['an empty value', keel(five().replace('e-1', '')), false],
    ['no space after a colon', keel(five().replace('Event-Id: ', 'Event-Id:')), false],
    ['a status line with a code', `NATS/1.0 503\r\n${five()}\r\n`, false],
    ['a bare LF in a value', keel(five().replace('c-1', 'c\n1')), false],
    ['UTF-8 in a value', Buffer.from(keel(five().replace('c-1', 'caf\u00e9')), 'utf8'), false],
    ['a malformed traceparent', keel(`${five()}traceparent: 00-zz\r\n`), true],
    ['a principal that is not JSON', keel(`${five()}Keel-Principal: {nope\r\n`), true],
  ];

  for (const [name, block, read] of blocks) {
    it(`${read ? 'reads' : 'leaves to the general reader'} ${name}`, async () => {
      const msg = await nats.received((subject) => nats.hpub(subject, block));
      const fast = readEventBlock(msg, 1, 'orders');
      if (!read) {
        expect(fast).toBeUndefined();
        return;
      }
      expect(fast).toBeDefined();
      expect(fast).toStrictEqual(generalEventReading(msg, 'orders'));
    });
  }

  it('reads nothing from a message without a header block', async () => {
    const msg = await nats.received((subject) => nats.nc.publish(subject, Buffer.from('{}')));
    expect(readEventBlock(msg, 1, 'orders')).toBeUndefined();
  });
});
