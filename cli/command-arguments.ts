/**
 * Reading an argument list against a command tree: which command it names (sub-commands and
 * their aliases, walked as far as the arguments go, options that take a value skipped with it),
 * and whether the options and arguments left are ones that command takes. `runCli` in
 * command.ts runs the command this finds; nothing here writes or runs anything.
 */
import { stripVTControlCharacters } from 'node:util';
import { parseArgs, type ArgsDef, type CommandDef, type Resolvable } from 'citty';
import { CLIError, CliErrorCode } from './errors.js';
import { nearestName } from 'keel/transport';

/** The value of a citty `Resolvable`: the value itself, or what its function returns. */
export const resolve = async <T>(value: Resolvable<T>): Promise<T> =>
  typeof value === 'function' ? (value as () => T | Promise<T>)() : value;

/** The command an argument list names, and the arguments left for it. */
export interface Resolved {
  readonly command: CommandDef;
  /** Names from the root to this command, such as `['keel', 'generate', 'module']`. */
  readonly path: readonly string[];
  readonly rawArgs: string[];
}

async function nameOf(command: CommandDef, fallback: string): Promise<string> {
  return (await resolve(command.meta ?? {}))?.name ?? fallback;
}

/** The name an option argument gives (`--http=8080` → `http`, `-p` → `p`). */
function optionNameOf(arg: string): string {
  return arg.replace(/^-{1,2}/, '').split('=')[0] as string;
}

/** Whether `arg` is an option whose value is the next argument (`--http 8080`, not `--http=8080` nor a boolean flag). */
function takesNextValue(arg: string, argsDef: ArgsDef): boolean {
  if (!arg.startsWith('-') || arg.includes('=')) return false;
  const name = optionNameOf(arg);
  return Object.entries(argsDef).some(
    ([key, def]) => (def.type === 'string' || def.type === 'enum') && (key === name || aliasesOf(def).includes(name)),
  );
}

/** A negative number (`-1`, `-0.5`): after an option that takes a value, that value, not an option. */
const NEGATIVE_NUMBER = /^-\d+(\.\d+)?$/;

function subCommandIndex(rawArgs: readonly string[], argsDef: ArgsDef): number {
  for (let index = 0; index < rawArgs.length; index++) {
    const arg = rawArgs[index] as string;
    if (arg === '--') return -1;
    if (arg.startsWith('-')) {
      if (takesNextValue(arg, argsDef)) index++;
      continue;
    }
    return index;
  }
  return -1;
}

function aliasesOf(def: ArgsDef[string]): string[] {
  const alias = 'alias' in def ? def.alias : undefined;
  return alias === undefined ? [] : Array.isArray(alias) ? alias : [alias];
}

async function findByAlias(subCommands: Record<string, Resolvable<CommandDef>>, name: string): Promise<CommandDef | undefined> {
  for (const sub of Object.values(subCommands)) {
    const command = await resolve(sub);
    const alias = (await resolve(command.meta ?? {}))?.alias;
    if (alias !== undefined && (Array.isArray(alias) ? alias : [alias]).includes(name)) return command;
  }
  return undefined;
}

/** Walks sub-commands as far as the argument list names them. */
export async function resolveCommand(root: CommandDef, rawArgs: string[]): Promise<Resolved> {
  let current: Resolved = { command: root, path: [await nameOf(root, 'keel')], rawArgs };
  for (;;) {
    const subCommands = await resolve(current.command.subCommands ?? {});
    if (Object.keys(subCommands).length === 0) return current;
    const index = subCommandIndex(current.rawArgs, await resolve(current.command.args ?? {}));
    if (index < 0) return current;
    const name = current.rawArgs[index] as string;
    const sub = subCommands[name] ?? (await findByAlias(subCommands, name));
    if (sub === undefined) {
      const near = nearestName(name, Object.keys(subCommands));
      throw new CLIError(
        CliErrorCode.E_UNKNOWN_COMMAND,
        `Unknown command "${name}" for ${current.path.join(' ')}.${near === undefined ? '' : ` Did you mean ${near}?`} Available: ${Object.keys(subCommands).join(', ')}.`,
        { hint: `Run \`${current.path.join(' ')} --help\` to see what each command does.` },
      );
    }
    const command = await resolve(sub);
    current = { command, path: [...current.path, name], rawArgs: current.rawArgs.slice(index + 1) };
  }
}

function knownOptionNames(argsDef: ArgsDef): Set<string> {
  const names = new Set<string>(['help', 'h']);
  const camel = (name: string) => name.replace(/-([a-z0-9])/g, (_, char: string) => char.toUpperCase());
  const kebab = (name: string) => name.replace(/[A-Z]/g, (char) => `-${char.toLowerCase()}`);
  for (const [name, def] of Object.entries(argsDef)) {
    if (def.type === 'positional') continue;
    for (const alias of [name, ...aliasesOf(def)]) {
      names.add(alias).add(camel(alias)).add(kebab(alias));
      if (def.type === 'boolean') names.add(`no-${alias}`).add(`no-${kebab(alias)}`);
    }
  }
  return names;
}

/**
 * Refuses, as a usage error, an option the command does not take, an argument more than its
 * positionals, and a string or enum option given without a value.
 */
export async function checkArguments(target: Resolved): Promise<void> {
  const argsDef = await resolve(target.command.args ?? {});
  const known = knownOptionNames(argsDef);
  const usage = `Run \`${target.path.join(' ')} --help\` for usage.`;
  for (const [index, arg] of target.rawArgs.entries()) {
    if (arg === '--') break;
    if (!arg.startsWith('-') || arg === '-') continue;
    // `--http -1`: the option's value, left to the option's own check (citty's parser takes it as the value too).
    if (NEGATIVE_NUMBER.test(arg) && index > 0 && takesNextValue(target.rawArgs[index - 1] as string, argsDef)) continue;
    const name = optionNameOf(arg);
    if (!known.has(name)) {
      // Suggested as written on a command line: a long option, in kebab case.
      const near = name.length > 1 ? nearestName(name, [...known].filter((option) => option.length > 1 && option === option.toLowerCase())) : undefined;
      const hint = near === undefined ? '' : ` Did you mean --${near}?`;
      throw new CLIError(CliErrorCode.E_USAGE, `Unknown option ${arg.split('=')[0]} for ${target.path.join(' ')}.${hint}`, { hint: usage });
    }
  }
  let parsed: { _: string[] };
  try {
    parsed = parseArgs(target.rawArgs, argsDef);
  } catch (error) {
    throw new CLIError(CliErrorCode.E_USAGE, `${stripVTControlCharacters((error as Error).message)}.`.replace(/\.\.$/, '.'), {
      hint: usage,
      cause: error,
    });
  }
  const positionals = Object.values(argsDef).filter((def) => def.type === 'positional').length;
  const extra = parsed._.slice(positionals);
  if (extra.length > 0) {
    throw new CLIError(CliErrorCode.E_USAGE, `Unexpected argument "${extra[0]}" for ${target.path.join(' ')}.`, { hint: usage });
  }
  for (const [name, def] of Object.entries(argsDef)) {
    const value = (parsed as Record<string, unknown>)[name];
    if ((def.type === 'string' || def.type === 'enum') && value === '') {
      throw new CLIError(CliErrorCode.E_USAGE, `Option --${name} needs a value.`, { hint: usage });
    }
  }
}
