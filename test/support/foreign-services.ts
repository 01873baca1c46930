/**
 * The NATS service framework of another client, `@nats-io/services` (`Svcm`), for tests that play
 * a service or a service client keel did not write. Its latest release is a prerelease built
 * against a prerelease of `@nats-io/nats-core`, whose types differ from the released
 * `@nats-io/transport-node` connection's in name only: the connection is passed through as is.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { Svcm } from '@nats-io/services';

/** `Svcm` on a `@nats-io/transport-node` connection. */
export function foreignServices(nc: NatsConnection): Svcm {
  return new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]);
}
