/**
 * Throwaway TLS certificates for tests, made with openssl: a CA, a server certificate for
 * 127.0.0.1 and localhost, and a client certificate. Without openssl a test fails saying so: it
 * is never skipped in silence.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The files {@link makeCertificates} writes (PEM), in `directory`; remove it after the test file. */
export interface TestCertificates {
  readonly directory: string;
  /** The CA that signed both certificates. */
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

/**
 * Makes a CA, a server certificate (SAN IP:127.0.0.1, DNS:localhost) and a client certificate,
 * each valid for a day, with P-256 keys.
 *
 * @example
 * ```ts
 * const certificates = makeCertificates();
 * const server = await startNatsServer({ tls: { certFile: certificates.serverCert, keyFile: certificates.serverKey } });
 * afterAll(() => rmSync(certificates.directory, { recursive: true, force: true }));
 * ```
 */
export function makeCertificates(): TestCertificates {
  const version = spawnSync('openssl', ['version']);
  if (version.error !== undefined || version.status !== 0) {
    throw new Error('openssl is not on PATH: the TLS tests make their certificates with it. Install it (Debian/Ubuntu: apt-get install openssl).');
  }
  const directory = mkdtempSync(join(tmpdir(), 'keel-nats-tls-'));
  const path = (name: string): string => join(directory, name);
  const openssl = (...args: string[]): void => {
    const result = spawnSync('openssl', args, { cwd: directory, encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`);
  };
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...key, '-keyout', path('ca.key'), '-out', path('ca.pem'), '-days', '1', '-subj', '/CN=keel test CA');
  for (const [name, extension] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(path(`${name}.ext`), `${extension}\n`);
    openssl('req', ...key, '-keyout', path(`${name}.key`), '-out', path(`${name}.csr`), '-subj', `/CN=keel test ${name}`);
    openssl(
      'x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial',
      '-out', path(`${name}.pem`), '-days', '1', '-extfile', path(`${name}.ext`),
    );
  }
  return {
    directory,
    ca: path('ca.pem'),
    serverCert: path('server.pem'),
    serverKey: path('server.key'),
    clientCert: path('client.pem'),
    clientKey: path('client.key'),
  };
}
