/**
 * Removing what keel made on JetStream for one subject prefix: each module's durable-event
 * stream and the dead-letter stream, and with them their durable consumers. For tests and
 * throwaway environments, whose prefix is their own.
 */
import { KeelError, KeelErrorCode } from 'keel';
import { jetstreamManager, type StreamConfig } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { connectionOptions } from './connection-options.js';
import { reason } from './connection.js';
import { isJetStreamNotEnabled } from './jetstream.js';
import { redactUrl, resolveOptions } from './option-checks.js';
import type { NatsTransportOptions } from './options.js';
import { Subjects } from './wire.js';

/**
 * Deletes the JetStream streams keel made for `prefix` (each module's durable-event stream,
 * `{prefix}_{module}`, and the dead-letter stream, `{prefix}__dead-letters`), which deletes
 * their durable consumers too, and resolves with their names. A stream is keel's when both its
 * name and its subjects are those keel gives it for this prefix, so another prefix's streams
 * (`acme` next to `acme.shop`) and streams keel did not make are left alone. A server without
 * JetStream has none to delete.
 *
 * Events still stored in them are lost: use it for a test's or a preview's own prefix, after
 * closing every transport of that prefix, never on an application's. `prefix` must be given;
 * the default `keel` is never assumed. The other options are those of
 * {@link createNatsTransport}.
 *
 * @example
 * ```ts
 * import { createNatsTransport, natsOptionsFromEnv, removeEventStreams } from 'keel/nats';
 *
 * const prefix = `test-${randomUUID().slice(0, 8)}`;
 * const transport = await createNatsTransport({ ...natsOptionsFromEnv(process.env), prefix });
 * // ... a kernel runs its tests over it, then:
 * await kernel.stop();
 * await transport.close();
 * await removeEventStreams({ ...natsOptionsFromEnv(process.env), prefix }); // ['test-1a2b3c4d_orders', 'test-1a2b3c4d__dead-letters']
 * ```
 */
export async function removeEventStreams(options: NatsTransportOptions & { readonly prefix: string }): Promise<string[]> {
  if (typeof options?.prefix !== 'string') {
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      'removeEventStreams: prefix must be given (the subject prefix whose streams to delete); the default "keel" is never assumed.',
    );
  }
  const resolved = resolveOptions(options);
  let nc: NatsConnection;
  try {
    nc = await connect({ ...connectionOptions(resolved), reconnect: false });
  } catch (error) {
    throw new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `removeEventStreams: could not connect to NATS at ${resolved.servers.map(redactUrl).join(', ')}: ${reason(error)}.`,
      { cause: error },
    );
  }
  try {
    const jsm = await jetstreamManager(nc, { timeout: resolved.jetStreamTimeoutMs }).catch((error: unknown) => {
      if (isJetStreamNotEnabled(error)) return undefined;
      throw error;
    });
    if (jsm === undefined) return [];
    const subjects = new Subjects(resolved.prefix);
    // The listing pages by offset: deleting while paging would shift later streams past the
    // next page. So every matching name is collected first, then deleted.
    const matching: string[] = [];
    for await (const stream of jsm.streams.list()) {
      if (isKeelStream(stream.config, subjects)) matching.push(stream.config.name);
    }
    const removed: string[] = [];
    for (const name of matching) {
      await jsm.streams.delete(name);
      removed.push(name);
    }
    return removed;
  } finally {
    await nc.close();
  }
}

/** True when `config` is a stream keel makes for `subjects`' prefix: its name and its one subject both match. */
function isKeelStream(config: StreamConfig, subjects: Subjects): boolean {
  const [subject, ...others] = config.subjects ?? [];
  if (subject === undefined || others.length > 0) return false;
  if (config.name === subjects.deadLetterStream()) return subject === subjects.deadLetterWildcard();
  const module = /^([^.]+)\.durable\.>$/.exec(subject.slice(subjects.prefix.length + 1))?.[1];
  return subject.startsWith(`${subjects.prefix}.`) && module !== undefined && config.name === subjects.stream(module) && subject === subjects.durableWildcard(module);
}
