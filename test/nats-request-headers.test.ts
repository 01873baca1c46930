/**
 * The callee reads the header block keel's callers write in one pass (adapters/nats/request-headers.ts)
 * and leaves every other block to the general reader (raw-headers.ts + `readRequestHeaders`). Both
 * must read a request alike: each block below crosses a real nats-server, written by keel's own
 * `callHeaders` or, for blocks the nats client would not write, as a raw `HPUB`, and what the callee
 * reads is compared with what the general reader makes of nats' own decoding.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Msg, MsgHdrs } from '@nats-io/transport-node';
import type { CallContext } from 'keel';
import { callHeaders, readRequestHeaders, type RequestHeaders } from '../adapters/nats/headers.js';
import { messageHeaders } from '../adapters/nats/raw-headers.js';
import { readKnownRequest } from '../adapters/nats/request-headers.js';
import { latin1 } from '../adapters/nats/header-bytes.js';
import { startRawNats, type RawNats } from './support/raw-nats.js';

let nats: RawNats;

beforeAll(async () => {
  nats = await startRawNats('request.headers');
});

afterAll(async () => {
  await nats?.close();
});

const TARGET = 'pricing.quote';
const DEFAULT_TIMEOUT_MS = 5_000;
const address = Object.freeze({ contract: 'pricing', version: '1.2.0', operation: 'quote' });
const context: CallContext = { correlationId: 'c0ffee-1k', traceparent: undefined, caller: 'orders', deadline: 1_796_130_796_236 };
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

/** A request sent with nats' client, its header block written by keel's `callHeaders`. */
function sentByKeel(headers: MsgHdrs, body = '{}'): Promise<Msg> {
  return nats.received((subject) => nats.nc.publish(subject, Buffer.from(body), { headers }));
}

/** A request whose header block is `block` exactly, sent as a raw HPUB. */
function sentRaw(block: string): Promise<Msg> {
  return nats.received((subject) => nats.hpub(subject, block));
}

/** What the general reader makes of nats' own decoding of the block: the reading to match. */
function generalReading(msg: Msg): RequestHeaders | Error {
  try {
    return readRequestHeaders(msg.headers, TARGET, DEFAULT_TIMEOUT_MS);
  } catch (error) {
    return error as Error;
  }
}

/** What the callee reads: the one-pass reader, else the general one over the block's bytes. */
function calleeReading(msg: Msg): RequestHeaders | Error {
  try {
    return readKnownRequest(msg) ?? readRequestHeaders(messageHeaders(msg), TARGET, DEFAULT_TIMEOUT_MS);
  } catch (error) {
    return error as Error;
  }
}

describe('the request header block keel writes', () => {
  const contexts: [string, CallContext, boolean][] = [
    ['version, correlation id, caller and deadline', context, true],
    ['with a traceparent', { ...context, traceparent: TRACEPARENT }, true],
    ['with an idempotency key', { ...context, idempotencyKey: 'order-42' }, false],
    ['with a principal', { ...context, principal: { sub: 'u-1', roles: ['clerk'] } }, false],
    ['with a call attempt', { ...context, callAttempt: 2 }, false],
    ['with every optional header', { ...context, traceparent: TRACEPARENT, idempotencyKey: 'k', callAttempt: 3 }, false],
  ];
  for (const [title, sent, oneReader] of contexts) {
    it(`${title}: read as the general reader reads it${oneReader ? ', in one pass' : ', by the general reader'}`, async () => {
      const msg = await sentByKeel(callHeaders(address, sent));
      const fast = readKnownRequest(msg);
      if (oneReader) expect(fast).toBeDefined();
      else expect(fast).toBeUndefined();
      const general = generalReading(msg);
      expect(calleeReading(msg)).toStrictEqual(general);
      expect(general).not.toBeInstanceOf(Error);
      expect((general as RequestHeaders).context.deadline).toBe(sent.deadline);
    });
  }

  it('a caller and a version that change from one request to the next are read anew each time', async () => {
    const versions = ['1.2.0', '1.2.0', '2.0.0-rc.1', '1.2.0', '10.0.0'];
    const callers = ['orders', 'billing', 'billing', 'orders', 'external'];
    for (let index = 0; index < versions.length; index += 1) {
      const msg = await sentByKeel(
        callHeaders({ ...address, version: versions[index] as string }, { ...context, caller: callers[index] as string }),
      );
      const read = readKnownRequest(msg);
      expect(read?.version).toBe(versions[index]);
      expect(read?.context.caller).toBe(callers[index]);
    }
  });

  it('a block repeating the last one but for its correlation id and deadline is read alike, and one that differs in any other byte anew', async () => {
    const sent: CallContext[] = [
      context,
      { ...context, correlationId: 'c0ffee-1l', deadline: 1_796_130_796_300 },
      { ...context, correlationId: 'another-id-of-another-length', deadline: 9 },
      { ...context, caller: 'ordersx' },
      { ...context, correlationId: 'c0ffee-1m', traceparent: TRACEPARENT },
      { ...context, correlationId: 'c0ffee-1n' },
    ];
    for (const [index, version] of ['1.2.0', '1.2.0', '1.2.0', '1.2.0', '1.2.0', '1.2.1'].entries()) {
      const msg = await sentByKeel(callHeaders({ ...address, version }, sent[index] as CallContext));
      const read = readKnownRequest(msg);
      expect(read).toStrictEqual(generalReading(msg));
      expect(read?.context.correlationId).toBe(sent[index]?.correlationId);
    }
  });
});

describe('blocks in any other form go to the general reader, which reads or refuses them as before', () => {
  const start = 'NATS/1.0\r\nKeel-Contract-Version: 1.2.0\r\nKeel-Correlation-Id: c-1\r\nKeel-Caller: orders\r\n';
  const blocks: [string, string, boolean][] = [
    ['keel\'s form, written by hand', `${start}Keel-Deadline: 1796130796236\r\n\r\n`, true],
    ['a deadline with leading zeros', `${start}Keel-Deadline: 00123\r\n\r\n`, true],
    ['a deadline of 16 digits', `${start}Keel-Deadline: 1796130796236000\r\n\r\n`, false],
    ['two spaces after a colon', 'NATS/1.0\r\nKeel-Contract-Version:  1.2.0\r\nKeel-Correlation-Id: c-1\r\nKeel-Caller: orders\r\nKeel-Deadline: 1796130796236\r\n\r\n', false],
    ['keys in another order', 'NATS/1.0\r\nKeel-Correlation-Id: c-1\r\nKeel-Contract-Version: 1.2.0\r\nKeel-Caller: orders\r\nKeel-Deadline: 1796130796236\r\n\r\n', false],
    ['a key in lower case', `${start.replace('Keel-Caller', 'keel-caller')}Keel-Deadline: 1796130796236\r\n\r\n`, false],
    ['no deadline', `${start}\r\n`, false],
    ['a deadline that is not a number', `${start}Keel-Deadline: soon\r\n\r\n`, false],
    ['a deadline with a sign', `${start}Keel-Deadline: +1796130796236\r\n\r\n`, false],
    ['a deadline of 17 digits', `${start}Keel-Deadline: 17961307962360000\r\n\r\n`, false],
    ['a version that is not semver', 'NATS/1.0\r\nKeel-Contract-Version: one\r\nKeel-Correlation-Id: c-1\r\nKeel-Caller: orders\r\nKeel-Deadline: 1796130796236\r\n\r\n', false],
    ['an empty caller', `${start.replace('Keel-Caller: orders', 'Keel-Caller:')}Keel-Deadline: 1796130796236\r\n\r\n`, false],
    ['a space inside a value', `${start.replace('c-1', 'c 1')}Keel-Deadline: 1796130796236\r\n\r\n`, true],
    ['a space at the end of a value', `${start.replace('c-1', 'c-1 ')}Keel-Deadline: 1796130796236\r\n\r\n`, false],
    ['a tab inside a value', `${start.replace('c-1', 'c\t1')}Keel-Deadline: 1796130796236\r\n\r\n`, false],
    ['a second deadline after the first', `${start}Keel-Deadline: 1796130796236\r\nKeel-Deadline: 1\r\n\r\n`, false],
    ['a header keel does not know', `${start}Keel-Deadline: 1796130796236\r\nX-Tenant: acme\r\n\r\n`, false],
    ['a traceparent that is not W3C', `${start}Keel-Deadline: 1796130796236\r\ntraceparent: 01-xyz\r\n\r\n`, true],
    ['a relative timeout instead of a deadline', `${start}Keel-Timeout-Ms: 250\r\n\r\n`, false],
  ];
  for (const [title, block, oneReader] of blocks) {
    it(`${title}: read${oneReader ? ' in one pass' : ' by the general reader'}, as nats' decoding reads it`, async () => {
      const msg = await sentRaw(block);
      if (oneReader) expect(readKnownRequest(msg)).toBeDefined();
      else expect(readKnownRequest(msg)).toBeUndefined();
      const general = generalReading(msg);
      const callee = calleeReading(msg);
      if (general instanceof Error) {
        expect(callee).toBeInstanceOf(Error);
        expect((callee as Error).message).toBe(general.message);
      } else if (block.includes('Keel-Timeout-Ms') || !block.includes('Keel-Deadline')) {
        // A deadline relative to now: the same but for the instant each reader took it.
        expect(callee).toStrictEqual({ ...general, context: { ...general.context, deadline: expect.any(Number) } });
      } else {
        expect(callee).toStrictEqual(general);
      }
    });
  }

  it('a version refused once is refused again, not remembered as read', async () => {
    const bad = 'NATS/1.0\r\nKeel-Contract-Version: v1\r\nKeel-Correlation-Id: c-1\r\nKeel-Caller: orders\r\nKeel-Deadline: 1796130796236\r\n\r\n';
    for (let round = 0; round < 2; round += 1) {
      const msg = await sentRaw(bad);
      expect(readKnownRequest(msg)).toBeUndefined();
      expect(calleeReading(msg)).toBeInstanceOf(Error);
    }
    const good = await sentRaw(bad.replace('v1', '1.2.0'));
    expect(readKnownRequest(good)?.version).toBe('1.2.0');
  });
});

describe('a block in a message nats assembled from several socket reads', () => {
  it('is read in one pass as the general reader reads it, from a plain Uint8Array as from a Buffer', async () => {
    // 600 kB of body: more than one socket read, so nats copies the message into an array of its own.
    const msg = await sentByKeel(callHeaders(address, { ...context, traceparent: TRACEPARENT }), JSON.stringify({ pad: 'x'.repeat(600_000) }));
    // nats' internals (see raw-headers.ts): the bytes are no Buffer here, which is the case this pins.
    expect((msg as unknown as { _rdata: unknown })._rdata instanceof Buffer).toBe(false);
    const fast = readKnownRequest(msg);
    expect(fast).toBeDefined();
    expect(fast).toStrictEqual(generalReading(msg));
  });

  it('latin1 decodes a plain Uint8Array at an offset into its buffer as it decodes a Buffer', () => {
    const text = 'NATS/1.0\r\nKeel-Correlation-Id: c-1\r\n';
    const backing = new Uint8Array(8 + text.length);
    backing.set(Buffer.from(text, 'latin1'), 8);
    const plain = backing.subarray(8);
    const start = text.indexOf('c-1');
    expect(plain instanceof Buffer).toBe(false);
    expect(latin1(plain, start, start + 3)).toBe('c-1');
    expect(latin1(Buffer.from(text, 'latin1'), start, start + 3)).toBe('c-1');
  });
});
