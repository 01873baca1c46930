/**
 * Starts a real `nats-server` for tests: loopback only, a free port, JetStream on, a fresh store
 * directory. No mocked bus stands in for NATS (STYLE.md).
 *
 * Servers started from a vitest file stop by themselves after that file (a file-level
 * `afterAll`), and every server is killed when the test process exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { nkeys } from '@nats-io/transport-node';
import { acceptsConnections, freePort } from '../../cli/nats-server.js';

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Largest message the server accepts, in bytes (`max_payload`). Default: the server's 1 MiB. */
  readonly maxPayload?: number;
  /** Require this token from clients. */
  readonly token?: string;
  /** Require this user and password from clients. */
  readonly user?: string;
  readonly password?: string;
  /** Binary to run. Default: `nats-server` from PATH, or `KEEL_NATS_SERVER_BIN`. */
  readonly binary?: string;
  /** How long to wait for the server to accept connections (default 15 000 ms). */
  readonly startTimeoutMs?: number;
  /** Enables JetStream (default true). */
  readonly jetstream?: boolean;
  /** Requires TLS with this certificate and key (PEM files); with `caFile` and `verify`, client certificates too. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile?: string; readonly verify?: boolean };
  /** Decentralised (JWT) authentication: clients need a credentials file of a user of these accounts. See {@link createOperatorAuth}. */
  readonly operator?: NatsOperatorAuth;
  /** Listen on this port instead of a free one (to stand in for another server at the same address). */
  readonly port?: number;
  /**
   * More configuration, appended to what the other options write: such as the `authorization`
   * block `keel deploy` generates (cli/deploy/nats-config.ts). Not with `token` or `user`, nor
   * `logfile` or `syslog`: the server counts as up once it says "Server is ready" on stderr.
   */
  readonly extraConfig?: string;
}

/** A NATS operator and its accounts, as a server in operator mode trusts them. */
export interface NatsOperatorAuth {
  /** The operator's self-signed JWT. */
  readonly operatorJwt: string;
  /** Account public key → account JWT, preloaded in the server's memory resolver. */
  readonly accounts: Readonly<Record<string, string>>;
}

/** A user's credentials file (the format `nsc` writes) and its parts. */
export interface NatsUserCredentials {
  /** The whole file: user JWT and nkey seed. */
  readonly text: string;
  readonly jwt: string;
  /** The user's nkey seed (`SU…`), the secret in the file. */
  readonly seed: string;
}

/** A running test server. */
export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The JetStream store directory (kept across {@link NatsServer.restart}). */
  readonly storeDir: string;
  /** True while the server process runs. */
  readonly running: boolean;
  /** What the server printed since it last started (its first 64 KiB): errors such as permission violations. */
  output(): string;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s). Idempotent. Removes the store on final stop. */
  stop(): Promise<void>;
  /** Stops the process only, keeping port and store, so that {@link NatsServer.start} can bring it back. */
  kill(): Promise<void>;
  /** Starts the process again on the same port and store directory. */
  start(): Promise<void>;
  /** {@link NatsServer.kill} then {@link NatsServer.start}: a server restart for reconnect tests. */
  restart(): Promise<void>;
  /**
   * Rewrites the configuration with this `extraConfig` in place of the one it started with and
   * reloads it (SIGHUP, as an operator does: clients stay connected), resolving once the server
   * says it reloaded. Fails with the server's output when it did not.
   */
  reload(extraConfig: string): Promise<void>;
}

const running = new Set<NatsServerImpl>();

process.once('exit', () => {
  for (const server of running) server.killNow();
});

if (process.env['VITEST'] !== undefined) {
  const { afterAll } = await import('vitest');
  try {
    afterAll(async () => {
      await Promise.all([...running].map((server) => server.stop()));
    });
  } catch {
    // imported outside a test file's collection; the exit hook still kills the servers
  }
}

/**
 * Starts `nats-server -js` on a free loopback port with a fresh store directory and resolves
 * once it accepts connections.
 *
 * @example
 * ```ts
 * let server: NatsServer;
 * beforeAll(async () => { server = await startNatsServer({ maxPayload: 64 * 1024 }); });
 * it('connects', async () => { const transport = await createNatsTransport({ servers: server.url }); });
 * ```
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = options.binary ?? process.env['KEEL_NATS_SERVER_BIN'] ?? 'nats-server';
  assertBinary(binary);
  // Another process may take the free port before nats-server binds it: try a few ports.
  for (let attempt = 1; ; attempt += 1) {
    const server = new NatsServerImpl(binary, options.port ?? (await freePort()), options);
    try {
      await server.start();
      return server;
    } catch (error) {
      await server.stop();
      if (options.port !== undefined || attempt >= 3 || !String(error).includes('address already in use')) throw error;
    }
  }
}

/** What {@link createOperatorAuth} makes. */
export interface OperatorAuthSetup {
  /** Pass as `operator` to {@link startNatsServer}. */
  readonly auth: NatsOperatorAuth;
  /** A user of the trusted account. */
  readonly user: NatsUserCredentials;
  /** A user of an account the server does not know: refused. */
  readonly stranger: NatsUserCredentials;
}

/**
 * Mints an operator, one account and users as `nsc` would (ed25519 nkeys from the `nats`
 * client, JWTs signed by their issuer), so that tests can connect with a credentials file
 * without any NATS tooling installed.
 *
 * @example
 * ```ts
 * const { auth, user } = createOperatorAuth();
 * const server = await startNatsServer({ operator: auth, jetstream: false });
 * writeFileSync(credsFile, user.text);
 * await createNatsTransport({ servers: server.url, credentialsFile: credsFile });
 * ```
 */
export function createOperatorAuth(): OperatorAuthSetup {
  const operator = nkeys.createOperator();
  const account = nkeys.createAccount();
  const unknownAccount = nkeys.createAccount();
  const accountClaims = {
    limits: { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 },
    default_permissions: { pub: {}, sub: {} },
    type: 'account',
    version: 2,
  };
  return {
    auth: {
      operatorJwt: signJwt(operator, operator.getPublicKey(), 'keel test operator', { type: 'operator', version: 2 }),
      accounts: { [account.getPublicKey()]: signJwt(operator, account.getPublicKey(), 'keel test account', accountClaims) },
    },
    user: userCredentials(account, 'keel test user'),
    stranger: userCredentials(unknownAccount, 'keel test stranger'),
  };
}

/** The part of an nkeys key pair these helpers use (the `nats` client types `nkeys` loosely). */
interface KeyPair {
  getPublicKey(): string;
  getSeed(): Uint8Array;
  sign(input: Uint8Array): Uint8Array;
}

function userCredentials(account: KeyPair, name: string): NatsUserCredentials {
  const user = nkeys.createUser() as KeyPair;
  const jwt = signJwt(account, user.getPublicKey(), name, { pub: {}, sub: {}, subs: -1, data: -1, payload: -1, type: 'user', version: 2 });
  const seed = new TextDecoder().decode(user.getSeed());
  const text =
    `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n` +
    `-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
  return { text, jwt, seed };
}

/** A NATS JWT (v2): header and claims in base64url, signed with the issuer's nkey. */
function signJwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const encode = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const header = encode({ typ: 'JWT', alg: 'ed25519-nkey' });
  const claims = encode({
    jti: randomBytes(16).toString('hex').toUpperCase(),
    iat: Math.floor(Date.now() / 1000),
    iss: issuer.getPublicKey(),
    name,
    sub: subject,
    nats,
  });
  const signature = Buffer.from(issuer.sign(new TextEncoder().encode(`${header}.${claims}`))).toString('base64url');
  return `${header}.${claims}.${signature}`;
}

function assertBinary(binary: string): void {
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      `Cannot run "${binary}" (${probe.error?.message ?? probe.stderr.trim()}). The NATS tests need a real nats-server on PATH: ` +
        'install it with `apt-get install nats-server` (Debian/Ubuntu), or put the binary from ' +
        'the nats-server releases on PATH, or point KEEL_NATS_SERVER_BIN at it.',
    );
  }
}

class NatsServerImpl implements NatsServer {
  readonly url: string;
  readonly storeDir: string;
  readonly #directory: string;
  readonly #config: string;
  #process: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output = '';
  #removed = false;
  #extraConfig: string | undefined;

  constructor(
    readonly binary: string,
    readonly port: number,
    readonly options: NatsServerOptions,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
    this.#directory = mkdtempSync(join(tmpdir(), 'keel-nats-'));
    this.storeDir = join(this.#directory, 'store');
    this.#config = join(this.#directory, 'nats-server.conf');
    this.#extraConfig = options.extraConfig;
    writeFileSync(this.#config, this.#configText());
  }

  get running(): boolean {
    return this.#process !== undefined;
  }

  output(): string {
    return this.#output;
  }

  #configText(): string {
    const lines = [`host: "127.0.0.1"`, `port: ${this.port}`];
    if (this.options.jetstream !== false) {
      lines.push(`jetstream { store_dir: ${JSON.stringify(this.storeDir)} }`);
    }
    if (this.options.maxPayload !== undefined) lines.push(`max_payload: ${this.options.maxPayload}`);
    const tls = this.options.tls;
    if (tls !== undefined) {
      const entries = [`cert_file: ${JSON.stringify(tls.certFile)}`, `key_file: ${JSON.stringify(tls.keyFile)}`];
      if (tls.caFile !== undefined) entries.push(`ca_file: ${JSON.stringify(tls.caFile)}`);
      if (tls.verify === true) entries.push('verify: true');
      lines.push(`tls { ${entries.join(', ')} }`);
    }
    const operator = this.options.operator;
    if (operator !== undefined) {
      const jwtFile = join(this.#directory, 'operator.jwt');
      writeFileSync(jwtFile, operator.operatorJwt);
      const preload = Object.entries(operator.accounts).map(([key, jwt]) => `${key}: ${JSON.stringify(jwt)}`);
      lines.push(`operator: ${JSON.stringify(jwtFile)}`, 'resolver: MEMORY', `resolver_preload: { ${preload.join(', ')} }`);
    }
    if (this.options.token !== undefined) {
      lines.push(`authorization { token: ${JSON.stringify(this.options.token)} }`);
    } else if (this.options.user !== undefined) {
      lines.push(
        `authorization { user: ${JSON.stringify(this.options.user)}, password: ${JSON.stringify(this.options.password ?? '')} }`,
      );
    }
    if (this.#extraConfig !== undefined) lines.push(this.#extraConfig);
    return `${lines.join('\n')}\n`;
  }

  async start(): Promise<void> {
    if (this.#removed) throw new Error(`nats-server on port ${this.port} was stopped for good; start a new one.`);
    if (this.#process !== undefined) return;
    this.#output = '';
    const child = spawn(this.binary, ['-c', this.#config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#process = child;
    running.add(this);
    const collect = (chunk: Buffer): void => {
      if (this.#output.length < 64 * 1024) this.#output += chunk.toString('utf8');
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let exited = false;
    this.#exited = new Promise((resolve) => {
      child.once('exit', () => {
        exited = true;
        if (this.#process === child) this.#process = undefined;
        running.delete(this);
        resolve();
      });
    });
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 15_000);
    while (Date.now() < deadline) {
      if (exited) break;
      // Its own "ready" line first: another server that took the port answers INFO too.
      if (this.#output.includes('Server is ready') && (await acceptsConnections(this.port))) return;
      await sleep(25);
    }
    this.killNow();
    throw new Error(
      `nats-server did not say "Server is ready" on its output and accept connections on 127.0.0.1:${this.port} ` +
        `(${exited ? 'it exited' : 'timed out'}; an extraConfig with logfile or syslog hides the line). Its output:\n${this.#output}`,
    );
  }

  async kill(): Promise<void> {
    const child = this.#process;
    if (child === undefined) return;
    child.kill('SIGTERM');
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    await this.#exited;
    clearTimeout(force);
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  async reload(extraConfig: string): Promise<void> {
    const child = this.#process;
    if (child === undefined) throw new Error(`nats-server on port ${this.port} is not running: start it before reloading its configuration.`);
    this.#extraConfig = extraConfig;
    writeFileSync(this.#config, this.#configText());
    const reloads = (): number => this.#output.split('Reloaded server configuration').length - 1;
    const before = reloads();
    child.kill('SIGHUP');
    const deadline = Date.now() + 10_000;
    while (reloads() === before) {
      if (Date.now() > deadline || this.#process !== child) {
        throw new Error(`nats-server on port ${this.port} did not say "Reloaded server configuration" within 10 s. Its output:\n${this.#output}`);
      }
      await sleep(25);
    }
  }

  async stop(): Promise<void> {
    await this.kill();
    if (!this.#removed) {
      this.#removed = true;
      rmSync(this.#directory, { recursive: true, force: true });
    }
  }

  /** Synchronous kill, for the process exit hook. */
  killNow(): void {
    this.#process?.kill('SIGKILL');
  }
}
