/**
 * Crash tests: a process killed with SIGKILL (as `kill -9`) at a point the kernel marks
 * (KEEL_TEST_CRASH_AT): between a commit and the relay's publish, between the publish and its
 * mark, and in a subscriber between its commit and its acknowledgement. After a restart, the
 * event is delivered and its effect happens once.
 *
 * The ledger and the audit each run in a child process (test/fixtures/data/crash-process.ts),
 * over a real nats-server (one for this file), on one PostgreSQL database made for each test.
 * The test calls the ledger through a kernel that hosts nothing and reads both modules' schemas
 * directly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKernel, isKeelError, silentLogger, type Kernel, type Transport } from 'keel';
import { Subjects, createNatsTransport } from 'keel/nats';
import { createPostgresDatabase } from 'keel/postgres';
import { auditModule, ledger, ledgerModule } from './fixtures/data/modules.js';
import { createTestDatabase, type TestDatabase } from './support/databases.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const root = fileURLToPath(new URL('..', import.meta.url));
/** A bound on each wait (a process serving, an effect seen): a child through tsx has taken 20 s to start on a loaded 2-core CI machine. */
const WAIT_MS = 30_000;

let server: NatsServer;
const databases: TestDatabase[] = [];
const children = new Set<ChildProcess>();

beforeAll(async () => {
  server = await startNatsServer();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const database of databases) await database.drop();
  await server?.stop();
});

/** The points kernel/outbox-relay.ts and kernel/module-host.ts mark (KEEL_TEST_CRASH_AT). */
type CrashPoint = 'outbox:after-commit' | 'outbox:after-publish' | 'inbox:after-commit';

/** A JSON line a child process logged. */
type LogLine = Record<string, unknown> & { msg?: string };

interface HostProcess {
  readonly lines: LogLine[];
  /** What it wrote so far, stdout and stderr, for a failure's message. */
  output(): string;
  /** How it ended, once it has (at most WAIT_MS from now). */
  ended(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stops it (SIGTERM, then SIGKILL after 5 s) unless it already ended. */
  stop(): Promise<void>;
}

async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, output: () => string = () => ''): Promise<T> {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** One test's world: a fresh database, its own subject prefix, a client kernel, and the processes it started. */
async function scenario(name: string) {
  const database = await createTestDatabase();
  databases.push(database);
  const prefix = `crash.${name}`;
  const engine = createPostgresDatabase({ url: database.url });
  const transport: Transport = await createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
  const client: Kernel = createKernel({ modules: [auditModule, ledgerModule], topology: { host: [], transport }, logger: silentLogger });
  await client.start();
  const started: HostProcess[] = [];

  /** Starts a process hosting `host`; resolves once it serves. */
  const start = async (host: 'ledger' | 'audit', crashAt?: CrashPoint): Promise<HostProcess> => {
    const { KEEL_TEST_CRASH_AT: _inherited, ...environment } = process.env;
    const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=keel-source', 'test/fixtures/data/crash-process.ts'], {
      cwd: root,
      env: {
        ...environment,
        KEEL_HOST: host,
        KEEL_NATS_URL: server.url,
        KEEL_NATS_PREFIX: prefix,
        DATABASE_URL: database.url,
        KEEL_PROCESS_NAME: '',
        ...(crashAt === undefined ? {} : { KEEL_TEST_CRASH_AT: crashAt }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    const exited = once(child, 'exit').then(([code, signal]) => {
      children.delete(child);
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
    const lines: LogLine[] = [];
    let text = '';
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      pending += chunk.toString();
      const complete = pending.split('\n');
      pending = complete.pop() ?? '';
      for (const line of complete) {
        try {
          lines.push(JSON.parse(line) as LogLine);
        } catch {
          // not a log record
        }
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => (text += chunk.toString()));
    let ended = false;
    void exited.then(() => (ended = true));
    const output = () => `; the ${host} process's output (last 4 000 characters):\n${text.slice(-4_000)}`;
    const hosted: HostProcess = {
      lines,
      output,
      ended: () => until(async () => (ended ? exited : undefined), `the ${host} process to end`, output),
      stop: async () => {
        if (ended) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      },
    };
    started.push(hosted);
    await until(
      () => (lines.some((line) => line.msg === 'kernel started') ? true : ended ? Promise.reject(new Error(`the ${host} process ended before it served:\n${text}`)) : undefined),
      `the ${host} process to serve`,
      output,
    );
    return hosted;
  };

  const onSchema = async <T>(schema: 'ledger' | 'audit', text: string, params: unknown[] = []): Promise<T[]> => {
    const connection = await engine.connect(schema);
    try {
      return (await connection.query(text, params)).rows as T[];
    } finally {
      await connection.close();
    }
  };

  return {
    client,
    start,
    /** What every process started so far wrote, for a failure's message. */
    output: () => started.map((hosted) => hosted.output()).join('\n'),
    /** The ledger's outbox, in order. */
    outbox: () =>
      onSchema<{ id: string; label: string; sent: boolean; attempts: number }>(
        'ledger',
        "select id, payload->>'label' as label, sent_at is not null as sent, attempts from keel_outbox order by seq",
      ),
    ledgerLabels: async () => (await onSchema<{ label: string }>('ledger', 'select label from entries order by id')).map((row) => row.label),
    /** What the audit recorded: each entry it was told about, and how many handlings had an effect. */
    audited: async () => ({
      labels: (await onSchema<{ label: string }>('audit', 'select label from entries order by seen_at, label')).map((row) => row.label),
      handled: (await onSchema<{ handled: number }>('audit', 'select handled from counter where id = 1'))[0]?.handled,
    }),
    inbox: () => onSchema<{ event_id: string }>('audit', 'select event_id from keel_inbox order by handled_at'),
    onLedger: (text: string) => onSchema('ledger', text),
    /** The last sequence number of the ledger's JetStream stream: how many events it stored. */
    streamLastSeq: async () => {
      const nc = await connect({ servers: server.url });
      try {
        const jsm = await jetstreamManager(nc);
        return (await jsm.streams.info(new Subjects(prefix).stream('ledger'))).state.last_seq;
      } finally {
        await nc.close();
      }
    },
    /** Stops every process still running, the client and the database connections. */
    close: async () => {
      for (const host of started) await host.stop();
      await client.stop();
      await transport.close();
      await engine.close();
    },
  };
}

type Scenario = Awaited<ReturnType<typeof scenario>>;

/** Runs `test` in a fresh scenario, and closes it whatever happens. */
async function inScenario(name: string, test: (run: Scenario) => Promise<void>): Promise<void> {
  const run = await scenario(name);
  try {
    await test(run);
  } finally {
    await run.close();
  }
}

/** Waits for the audit to have had `count` handlings with an effect. */
async function untilHandled(run: Scenario, count: number, what: string): Promise<void> {
  await until(async () => ((await run.audited()).handled === count ? true : undefined), what, run.output);
}

/** Adds a later entry and waits for the audit to record it: whatever was published before it has been handled or dropped. */
async function laterEventArrives(run: Scenario, label: string): Promise<void> {
  await run.client.client(ledger).add({ label });
  await until(async () => ((await run.audited()).labels.includes(label) ? true : undefined), `the audit to record ${label}`, run.output);
}

// Up to three processes started in turn per test, each bounded by WAIT_MS.
describe('data - crash between commit and publish', { timeout: 180_000 }, () => {
  it('delivers, once, an event whose process was killed after its transaction committed and before the relay published it', () =>
    inScenario('after-commit', async (run) => {
      await run.start('audit');
      const crashing = await run.start('ledger', 'outbox:after-commit');
      // A deadline the call cannot miss before the handler starts (a request arriving after it is not run, and nothing
      // would then commit or kill the process), even on a loaded machine; the process dies, so it ends in TIMEOUT anyway.
      const answer = run.client.client(ledger).add({ label: 'committed-then-killed' }, { timeoutMs: 5_000 }).catch((error: unknown) => error);
      expect(await crashing.ended()).toEqual({ code: null, signal: 'SIGKILL' });
      // The caller never got an answer: its outcome is unknown to it.
      expect(isKeelError(await answer, 'TIMEOUT')).toBe(true);
      // Committed, and never published: the relay did not even claim it.
      expect(await run.ledgerLabels()).toEqual(['committed-then-killed']);
      expect(await run.outbox()).toEqual([expect.objectContaining({ label: 'committed-then-killed', sent: false, attempts: 0 })]);
      expect(await run.audited()).toEqual({ labels: [], handled: 0 });

      await run.start('ledger');
      await untilHandled(run, 1, 'the event left in the outbox to be delivered');
      await laterEventArrives(run, 'later');
      expect(await run.audited()).toEqual({ labels: ['committed-then-killed', 'later'], handled: 2 });
      expect(await run.outbox()).toEqual([
        expect.objectContaining({ label: 'committed-then-killed', sent: true, attempts: 1 }),
        expect.objectContaining({ label: 'later', sent: true, attempts: 1 }),
      ]);
    }));

  it('gives one effect to an event whose process was killed after the relay published it and before it marked it sent', () =>
    inScenario('after-publish', async (run) => {
      await run.start('audit');
      const crashing = await run.start('ledger', 'outbox:after-publish');
      // Answered or not: the process dies as soon as JetStream confirms the event.
      // (A deadline the request cannot miss before the handler starts, even on a loaded machine: see the test above.)
      await run.client.client(ledger).add({ label: 'published-then-killed' }, { timeoutMs: 5_000 }).catch(() => undefined);
      expect(await crashing.ended()).toEqual({ code: null, signal: 'SIGKILL' });
      // Claimed and published (the audit gets it), never marked sent.
      const [row] = await run.outbox();
      expect(row).toEqual(expect.objectContaining({ label: 'published-then-killed', sent: false, attempts: 1 }));
      await untilHandled(run, 1, 'the first delivery');
      expect(await run.streamLastSeq()).toBe(1);

      // The dead process's claim keeps the row from other relays for claimSeconds (30 s); let it
      // lapse now, as the clock would, rather than wait.
      await run.onLedger("update keel_outbox set claimed_until = now() - interval '1 second' where sent_at is null");
      await run.start('ledger');
      // Published again with the same event id, and marked sent this time.
      await until(async () => {
        const [again] = await run.outbox();
        return again?.attempts === 2 && again.sent ? true : undefined;
      }, 'the event to be published again', run.output);
      // JetStream's duplicate window recognised the id: the stream did not store it a second time.
      expect(await run.streamLastSeq()).toBe(1);
      await laterEventArrives(run, 'later');
      expect(await run.streamLastSeq()).toBe(2);
      expect(await run.audited()).toEqual({ labels: ['published-then-killed', 'later'], handled: 2 });
      expect((await run.inbox()).map((entry) => entry.event_id)).toEqual((await run.outbox()).map((entry) => entry.id));
    }));

  it('gives one effect to an event redelivered because its subscriber was killed after committing its effect and before acknowledging it', () =>
    inScenario('inbox-after-commit', async (run) => {
      const crashing = await run.start('audit', 'inbox:after-commit');
      await run.start('ledger');
      await run.client.client(ledger).add({ label: 'handled-then-killed' });
      expect(await crashing.ended()).toEqual({ code: null, signal: 'SIGKILL' });
      // The effect and the inbox record committed; JetStream never got the acknowledgement.
      const [row] = await run.outbox();
      expect(row).toEqual(expect.objectContaining({ label: 'handled-then-killed', sent: true }));
      expect(await run.audited()).toEqual({ labels: ['handled-then-killed'], handled: 1 });
      expect(await run.inbox()).toEqual([{ event_id: row?.id }]);

      const restarted = await run.start('audit');
      // JetStream redelivers it (the consumer's ack wait is 1 s); the inbox knows its id and skips the handler.
      await until(
        () => (restarted.lines.some((line) => line.msg === 'event already handled; skipped' && line['eventId'] === row?.id) ? true : undefined),
        'the restarted audit to skip the redelivered event',
        restarted.output,
      );
      await laterEventArrives(run, 'later');
      expect(await run.audited()).toEqual({ labels: ['handled-then-killed', 'later'], handled: 2 });
    }));
});
