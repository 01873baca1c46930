/**
 * Where this process's modules run, read from the environment. This minimal version hosts
 * every module in this process with no transport; the topology helper replaces it with one
 * that reads `KEEL_HOST` and `KEEL_NATS_URL`.
 */
import type { Transport } from 'keel';

/**
 * The topology for `env`: which modules to host, and the transport to the others.
 *
 * @example
 * ```ts
 * const topology = await topologyFromEnv(process.env);
 * const kernel = createKernel({ modules, topology });
 * ```
 */
export async function topologyFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): Promise<{ host?: string[]; transport?: Transport }> {
  void env;
  return {};
}
