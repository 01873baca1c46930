/**
 * Where this process's modules run, read from the environment: `KEEL_MODULES` names the
 * modules to host here (all of them by default), `KEEL_NATS_URL` connects to the others over
 * NATS (without it, everything runs in this one process). See docs/topologies.md.
 */
import { KeelError, KeelErrorCode, type AnyModule, type Logger, type Transport } from 'keel';
import { createNatsTransport, natsOptionsFromEnv } from 'keel/nats';
import { modules } from '../modules/index.js';

/** What {@link topologyFromEnv} returns: a kernel `topology`. */
export interface AppTopology {
  /** Modules to host here; absent means every module of the manifest. */
  host?: string[];
  /** Transport to the modules hosted elsewhere; absent means everything runs in this process. */
  transport?: Transport;
}

/** The `KEEL_MODULES` value that hosts no module (a pure client, such as a gateway). */
export const NO_MODULES = 'none';

/**
 * The topology for `env`: which modules to host (`KEEL_MODULES`, comma-separated, default all;
 * `none` hosts nothing), and the NATS transport to the others when `KEEL_NATS_URL` is set
 * (with `KEEL_NATS_PREFIX`, `KEEL_NATS_TOKEN`, … as in docs/topologies.md). Refuses unknown
 * module names and bad NATS settings with a `KeelError` (`INVALID_CONFIG`) naming the variable.
 * Close the returned transport after stopping the kernel.
 *
 * @example
 * ```ts
 * // KEEL_MODULES=orders KEEL_NATS_URL=nats://127.0.0.1:4222
 * const topology = await topologyFromEnv(process.env);
 * const kernel = createKernel({ modules, topology });
 * await kernel.start();
 * // on shutdown:
 * await kernel.stop();
 * await topology.transport?.close();
 * ```
 */
export async function topologyFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  options: {
    /** The modules `KEEL_MODULES` may name (default: the shop's). */
    readonly manifest?: readonly AnyModule[];
    /** The process's logger, which the NATS transport writes to (else its own, named `keel-nats`). */
    readonly logger?: Logger;
  } = {},
): Promise<AppTopology> {
  const host = hostedModules(env['KEEL_MODULES'], options.manifest ?? modules);
  const nats = natsOptionsFromEnv(env);
  if (nats === undefined) return host === undefined ? {} : { host };
  const transport = await createNatsTransport(options.logger === undefined ? nats : { ...nats, logger: options.logger });
  return host === undefined ? { transport } : { host, transport };
}

function hostedModules(value: string | undefined, manifest: readonly AnyModule[]): string[] | undefined {
  const trimmed = value?.trim() ?? '';
  if (trimmed === '') return undefined;
  if (trimmed === NO_MODULES) return [];
  const known = manifest.map((module) => module.name);
  const names = [...new Set(trimmed.split(',').map((name) => name.trim()).filter((name) => name !== ''))];
  const unknown = names.filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `KEEL_MODULES names ${unknown.map((name) => `"${name}"`).join(', ')}, which ${unknown.length === 1 ? 'is' : 'are'} not in the application ` +
        `(its modules: ${known.join(', ')}). Use those names separated by commas, or "${NO_MODULES}" to host nothing.`,
    );
  }
  return names;
}
