/**
 * NATS permissions from the module graph: for each process group of a topology, the subjects
 * its NATS user may publish to and subscribe to, derived from the contracts of the modules it
 * hosts, their `dependsOn` and their `subscribesTo`, and nothing else. A pure function of the
 * topology and the manifest; `nats-config.ts` writes it as nats-server configuration.
 */
import type { AnyContract, AnyModule } from 'keel';
import { Subjects } from 'keel/nats';
import type { TopologyFile } from '../topology.js';
import { groupEnvironment } from './plan.js';

/**
 * What one NATS user may do: publish to and subscribe to exactly these subjects, and answer
 * the requests it receives (`allow_responses`).
 *
 * @example
 * ```ts
 * const storefront: NatsUserPermissions = natsPermissions(topology, modules).find((user) => user.user === 'storefront')!;
 * storefront.subscribe; // ['_INBOX_keel.storefront.>', 'keel.catalog.getProduct', ...]
 * ```
 */
export interface NatsUserPermissions {
  /** The user name: the process group's name, or {@link NATS_CLIENT_USER}. */
  readonly user: string;
  /** Its reply subjects' prefix (`KEEL_NATS_INBOX_PREFIX`): only it may subscribe under it. */
  readonly inboxPrefix: string;
  /** Subjects it may publish to (besides replies to requests it received). */
  readonly publish: readonly string[];
  /** Subjects it may subscribe to. */
  readonly subscribe: readonly string[];
  /**
   * How many replies it may send to one request it received (`allow_responses.max`): one per
   * module it hosts, since a `$SRV` question to every service (`$SRV.PING`, as `keel status`
   * asks) reaches each of its modules' services on its one connection, and each answers.
   */
  readonly responses: number;
}

/**
 * The user that is no process group: a client of every operation that hosts nothing (an
 * operator's `keel status`, a script, a test). It may call every operation and ask `$SRV`, and
 * read its own inbox; it may not serve, publish events or read anything else. A `_` starts it,
 * so no group (lower-kebab-case) can have its name.
 *
 * @example
 * ```ts
 * natsClientPermissions(topology, modules).user; // '_client'
 * ```
 */
export const NATS_CLIENT_USER = '_client';

/**
 * The reply inbox prefix of a user: `_INBOX_{prefix with _ for .}.{user}`. No user shares
 * another's, and none has `_INBOX.>`.
 *
 * @example
 * ```ts
 * natsInboxPrefix('keel', 'storefront'); // '_INBOX_keel.storefront'
 * ```
 */
export function natsInboxPrefix(prefix: string, user: string): string {
  return `_INBOX_${prefix.replaceAll('.', '_')}.${user}`;
}

/** The subject prefix a topology's processes share (`nats.prefix`, default `keel`). */
export function topologyPrefix(topology: TopologyFile): string {
  return topology.nats.prefix ?? 'keel';
}

const JS_API = '$JS.API';

/** The JetStream API subjects that make, inspect or update a stream (update only for its owner). */
function streamApi(stream: string, owner: boolean): string[] {
  return [`${JS_API}.STREAM.INFO.${stream}`, `${JS_API}.STREAM.CREATE.${stream}`, ...(owner ? [`${JS_API}.STREAM.UPDATE.${stream}`] : [])];
}

/**
 * The JetStream API subjects of one durable consumer: make (or update) it with its own filter
 * subject and no other (the create API of nats-server 2.9+ names the filter in the subject, so a
 * subscriber cannot point its consumer at events it does not subscribe to), inspect it, pull
 * from it, acknowledge.
 */
function consumerApi(stream: string, consumer: string, filter: string): string[] {
  return [
    `${JS_API}.CONSUMER.CREATE.${stream}.${consumer}.${filter}`,
    `${JS_API}.CONSUMER.INFO.${stream}.${consumer}`,
    `${JS_API}.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
    `$JS.ACK.${stream}.${consumer}.>`,
  ];
}

/** `$SRV` discovery subjects a served module answers: every verb, for all, for its name, and for its instance ids. */
function serviceDiscovery(module: string): string[] {
  return ['PING', 'INFO', 'STATS'].flatMap((verb) => [`$SRV.${verb}`, `$SRV.${verb}.${module}`, `$SRV.${verb}.${module}.*`]);
}

/**
 * Operation subjects of a contract, the `$SRV.INFO` question a caller asks when nothing answers,
 * and where a caller cancels a call it gave up on.
 */
function callsTo(subjects: Subjects, contract: AnyContract, served: 'all' | 'not-internal' = 'all'): string[] {
  return [
    ...Object.entries(contract.operations)
      .filter(([, operation]) => served === 'all' || !operation.internal)
      .map(([operation]) => subjects.operation(contract.name, operation)),
    `$SRV.INFO.${contract.name}`,
    subjects.cancel(contract.name),
  ];
}

function isDurable(contract: AnyContract, event: string): boolean {
  return contract.events[event]?.delivery === 'durable';
}

const sorted = (subjects: Iterable<string>): string[] => [...new Set(subjects)].sort();

/**
 * Every process group's permissions, in the topology's order:
 *
 * - subscribe: its own inbox; the operation subjects of the modules it hosts, their `$SRV`
 *   discovery subjects and their cancel subjects; the notification events of the contracts
 *   they subscribe to;
 * - publish: the operations (and `$SRV.INFO`, and the cancel subject) of the modules they depend on, hosted elsewhere;
 *   every operation but the internal ones when the group's HTTP gateway exposes `all`; the events of the modules it
 *   hosts; `$JS.API.INFO`; the JetStream API of its own modules' streams and of its own durable
 *   consumers on the streams of the contracts it subscribes to, their acknowledgements, the
 *   dead-letter stream and its own dead-letter subjects.
 *
 * Replies to the requests it receives go through `allow_responses`, up to one per hosted module
 * for each request (`responses`).
 *
 * @example
 * ```ts
 * for (const user of natsPermissions(topology, await loadManifest(project))) console.log(user.user, user.publish.length);
 * ```
 */
export function natsPermissions(topology: TopologyFile, modules: readonly AnyModule[]): NatsUserPermissions[] {
  const prefix = topologyPrefix(topology);
  const subjects = new Subjects(prefix);
  const byName = new Map(modules.map((module) => [module.name as string, module]));
  return Object.entries(topology.processes).map(([group, spec]) => {
    const hosted = spec.modules.map((name) => byName.get(name)).filter((module): module is AnyModule => module !== undefined);
    const isHosted = (contract: AnyContract): boolean => spec.modules.includes(contract.name);
    const inboxPrefix = natsInboxPrefix(prefix, group);
    const publish: string[] = [`${JS_API}.INFO`];
    const subscribe: string[] = [`${inboxPrefix}.>`];
    const exposesAll = groupEnvironment(topology, group, spec).some(([key, value]) => key === 'KEEL_HTTP_OPERATIONS' && value === 'all');
    if (exposesAll) {
      // What its gateway serves: no internal operation (those of its modules' dependencies are added below).
      for (const module of modules) if (!isHosted(module.contract)) publish.push(...callsTo(subjects, module.contract, 'not-internal'));
    }
    for (const module of hosted) {
      const contract: AnyContract = module.contract;
      for (const operation of Object.keys(contract.operations)) subscribe.push(subjects.operation(contract.name, operation));
      subscribe.push(...serviceDiscovery(contract.name), subjects.cancel(contract.name));
      for (const event of Object.keys(contract.events)) {
        publish.push(isDurable(contract, event) ? subjects.durable(contract.name, event) : subjects.notification(contract.name, event));
      }
      if (Object.keys(contract.events).some((event) => isDurable(contract, event))) publish.push(...streamApi(subjects.stream(contract.name), true));
      for (const dependency of module.dependsOn as readonly AnyContract[]) {
        if (!isHosted(dependency)) publish.push(...callsTo(subjects, dependency));
      }
      for (const source of module.subscribesTo as readonly AnyContract[]) {
        for (const event of Object.keys(source.events)) {
          if (!isDurable(source, event)) {
            subscribe.push(subjects.notification(source.name, event));
            continue;
          }
          const stream = subjects.stream(source.name);
          // A subscriber may start first: it makes the publisher's stream (never updates it) to attach its consumer.
          publish.push(...streamApi(stream, false), ...consumerApi(stream, subjects.consumer(module.name, event), subjects.durable(source.name, event)));
          publish.push(...streamApi(subjects.deadLetterStream(), false), subjects.deadLetter(module.name, source.name, event));
        }
      }
    }
    return { user: group, inboxPrefix, publish: sorted(publish), subscribe: sorted(subscribe), responses: Math.max(1, hosted.length) };
  });
}

/**
 * The permissions of {@link NATS_CLIENT_USER}: every operation of the manifest and the `$SRV`
 * questions (`keel status`), its own inbox, nothing else.
 *
 * @example
 * ```ts
 * natsClientPermissions(topology, modules).publish.includes('keel.orders.placeOrder'); // true
 * ```
 */
export function natsClientPermissions(topology: TopologyFile, modules: readonly AnyModule[]): NatsUserPermissions {
  const prefix = topologyPrefix(topology);
  const subjects = new Subjects(prefix);
  const inboxPrefix = natsInboxPrefix(prefix, NATS_CLIENT_USER);
  const publish = [...modules.flatMap((module) => callsTo(subjects, module.contract)), '$SRV.PING', '$SRV.INFO', '$SRV.STATS', '$SRV.*.*'];
  return { user: NATS_CLIENT_USER, inboxPrefix, publish: sorted(publish), subscribe: [`${inboxPrefix}.>`], responses: 1 };
}
