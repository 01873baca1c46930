/**
 * Runs the steps of a Dockerfile that `keel deploy` writes, for real, on this machine: no Docker
 * engine runs here, and no registry image can be pulled, so each stage is a folder standing for
 * its `/app`, `RUN` lines run in it with the machine's Node, `COPY` copies from the build
 * context (minus `.dockerignore`) or from an earlier stage, and the runtime stage's `CMD` and
 * `HEALTHCHECK` are what the test starts. An instruction this runner does not know fails the
 * test, so the generated file cannot drift away from what is tested.
 */
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, delimiter, join, relative } from 'node:path';
import type { Readable } from 'node:stream';

/** One stage: its folder (its `/app`) and the environment its `ENV` lines set. */
export interface Stage {
  readonly name: string;
  readonly folder: string;
  readonly env: Record<string, string>;
  cmd?: string[];
  healthcheck?: string[];
  user?: string;
}

const WORKDIR = '/app';

/** Splits a Dockerfile into instructions, joining continued lines and dropping comments. */
function instructions(text: string): Array<{ keyword: string; rest: string }> {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [keyword = ''] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), rest: line.slice(keyword.length).trim() };
    });
}

/** `KEY=value KEY2=value2` (values without spaces, as keel deploy writes them). */
function parseEnv(text: string): Record<string, string> {
  return Object.fromEntries(text.split(/\s+/).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
}

/** A path of the image (`/app/dist`, `./dist`, `.`) inside a stage's folder. */
function inStage(stage: Stage, path: string): string {
  const inside = path.startsWith(`${WORKDIR}/`) || path === WORKDIR ? path.slice(WORKDIR.length) : path;
  return join(stage.folder, inside);
}

function copyFromContext(context: string, ignored: readonly string[], sources: string[], destination: string): void {
  const skip = (path: string): boolean => {
    const name = relative(context, path);
    return ignored.some((pattern) =>
      pattern.startsWith('*') ? basename(path).endsWith(pattern.slice(1)) : name === pattern || name.startsWith(`${pattern}/`),
    );
  };
  for (const source of sources) {
    const from = join(context, source);
    const to = source === '.' ? destination : destination.endsWith('/') ? join(destination, basename(source)) : destination;
    cpSync(from, to, { recursive: true, filter: (path) => !skip(path) });
  }
}

/**
 * Runs every stage of `dockerfile` with `context` as the build context, in `workspace`, and
 * returns the stages by name (the last one is the runtime). `env` is added to every `RUN`. When
 * this process runs as root, a `RUN` after `USER` runs as that user, so the workspace (and the
 * `node` first on `env`'s PATH) must be open to it.
 *
 * @example
 * ```ts
 * const stages = runDockerfileSteps({ dockerfile: 'deploy/Dockerfile', context: app, workspace: tmp, env: {} });
 * const runtime = stages.at(-1)!;
 * ```
 */
export function runDockerfileSteps(options: {
  readonly dockerfile: string;
  readonly context: string;
  readonly workspace: string;
  readonly env: Record<string, string | undefined>;
}): Stage[] {
  const ignoreFile = [`${options.dockerfile}.dockerignore`, join(options.context, '.dockerignore')].find((path) => existsSync(path));
  const ignored = ignoreFile === undefined ? [] : readFileSync(ignoreFile, 'utf8').split('\n').map((line) => line.trim()).filter(Boolean);
  const stages: Stage[] = [];
  let stage: Stage | undefined;
  const runEnv = { ...options.env, ...asImageUser(options.workspace, options.env) };
  for (const { keyword, rest } of instructions(readFileSync(options.dockerfile, 'utf8'))) {
    if (keyword === 'FROM') {
      const name = /\bAS\s+(\S+)/i.exec(rest)?.[1] ?? `stage-${stages.length}`;
      stage = { name, folder: join(options.workspace, name), env: {} };
      mkdirSync(stage.folder, { recursive: true });
      stages.push(stage);
      continue;
    }
    if (stage === undefined) throw new Error(`${keyword} before FROM in ${options.dockerfile}`);
    switch (keyword) {
      case 'WORKDIR':
        if (rest !== WORKDIR) throw new Error(`this runner maps ${WORKDIR} only, not WORKDIR ${rest}`);
        break;
      case 'ENV':
        // A value naming a path of the image (`/app/...`) names that path in the stage's folder.
        for (const [name, value] of Object.entries(parseEnv(rest))) {
          stage.env[name] = value === WORKDIR || value.startsWith(`${WORKDIR}/`) ? inStage(stage, value) : value;
        }
        break;
      case 'COPY': {
        const words = rest.split(/\s+/);
        const from = words.find((word) => word.startsWith('--from='))?.slice('--from='.length);
        const paths = words.filter((word) => !word.startsWith('--'));
        const destination = inStage(stage, paths.pop() ?? '.');
        if (from === undefined) {
          copyFromContext(options.context, ignored, paths, destination);
        } else {
          const source = stages.find((earlier) => earlier.name === from);
          if (source === undefined) throw new Error(`COPY --from=${from}: no such stage`);
          for (const path of paths) cpSync(inStage(source, path), destination, { recursive: true });
        }
        break;
      }
      case 'RUN': {
        const command = rest.replace(/^(--mount=\S+\s+)+/, '');
        // As the stage's USER once one is set (when this process may switch to it), as Docker does.
        execFileSync('sh', ['-c', command], {
          cwd: stage.folder,
          env: { ...runEnv, ...stage.env },
          stdio: ['ignore', 'pipe', 'pipe'],
          timeout: 300_000,
          ...userOf(stage),
        });
        break;
      }
      case 'USER':
        stage.user = rest;
        break;
      case 'CMD':
        stage.cmd = JSON.parse(rest) as string[];
        break;
      case 'HEALTHCHECK':
        stage.healthcheck = JSON.parse(rest.slice(rest.indexOf('CMD') + 3).trim()) as string[];
        break;
      case 'EXPOSE':
        break;
      default:
        throw new Error(`this runner does not know the Dockerfile instruction ${keyword}`);
    }
  }
  return stages;
}

/**
 * What a `RUN` needs beyond `env` when this process cannot switch users (it is not root): giving
 * files to the image's user (`chown`) is then left out, by a `chown` first on PATH that does
 * nothing, since every step and the CMD run as this one user anyway.
 */
function asImageUser(workspace: string, env: Record<string, string | undefined>): Record<string, string> {
  if (process.getuid?.() === 0) return {};
  const bin = join(workspace, '.runner-bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'chown'), '#!/bin/sh\n# The Dockerfile runner is not root: every step runs as one user, so ownership stays as it is.\nexit 0\n', { mode: 0o755 });
  return { PATH: `${bin}${delimiter}${env['PATH'] ?? ''}` };
}

/** User ids of the official node image's users. */
const IMAGE_USERS: Readonly<Record<string, number>> = { root: 0, node: 1000 };

/**
 * The uid and gid a stage's `USER` runs as, when this process may switch to it (it runs as
 * root, as CI does); otherwise nothing, and the command runs as whoever runs the test.
 */
export function userOf(stage: Stage): { uid: number; gid: number } | Record<string, never> {
  if (stage.user === undefined || process.getuid?.() !== 0) return {};
  const id = IMAGE_USERS[stage.user] ?? Number(stage.user);
  if (!Number.isInteger(id)) throw new Error(`this runner does not know the image user ${stage.user}`);
  return { uid: id, gid: id };
}

/**
 * Starts a stage's `CMD` (exec form) in its folder, as its `USER`, with its `ENV` and then the
 * `PORT` and `KEEL_*` variables of `env` over it (as compose or Kubernetes set them).
 *
 * @example
 * ```ts
 * const child = startCmd(runtime, { PORT: '0' });
 * ```
 */
export function startCmd(stage: Stage, env: Record<string, string | undefined>): ChildProcessByStdio<null, Readable, Readable> {
  const [command, ...args] = stage.cmd ?? [];
  if (command === undefined) throw new Error(`stage ${stage.name} has no CMD`);
  return spawn(command, args, {
    cwd: stage.folder,
    env: { ...env, ...stage.env, ...pick(env) },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...userOf(stage),
  });
}

/**
 * Runs a stage's `HEALTHCHECK` command as its `USER`, with its `ENV` and `env` over it; throws
 * when it exits non-zero.
 *
 * @example
 * ```ts
 * runHealthcheck(runtime, { PORT: '43121' });
 * ```
 */
export function runHealthcheck(stage: Stage, env: Record<string, string | undefined>): void {
  const [command, ...args] = stage.healthcheck ?? [];
  if (command === undefined) throw new Error(`stage ${stage.name} has no HEALTHCHECK`);
  execFileSync(command, args, { cwd: stage.folder, env: { ...env, ...stage.env, ...pick(env) }, stdio: 'pipe', timeout: 10_000, ...userOf(stage) });
}

/** The variables the test sets on purpose (PORT, host) win over the image's defaults. */
function pick(env: Record<string, string | undefined>): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(env).filter(([key]) => /^(PORT|KEEL_)/.test(key)));
}
