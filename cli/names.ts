/**
 * Names: module names are lower-kebab-case (the kernel's rule for contract names); the
 * generator derives the identifiers it writes from them.
 */
import { CLIError, CliErrorCode } from './errors.js';

/** The kernel's rule for contract and module names. */
export const MODULE_NAME_PATTERN = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
/** Operation and event names the generator writes: camelCase (the kernel also takes a capital first letter; docs/cli.md asks camelCase). */
export const MEMBER_NAME_PATTERN = /^[a-z][a-zA-Z0-9]*$/;

const RESERVED = new Set([
  'index',
  'keel',
  'test',
  'support',
  'node-modules',
  // JavaScript reserved words would make unusable identifiers.
  'break', 'case', 'catch', 'class', 'const', 'continue', 'debugger', 'default', 'delete', 'do', 'else', 'enum',
  'export', 'extends', 'false', 'finally', 'for', 'function', 'if', 'import', 'in', 'instanceof', 'new', 'null',
  'return', 'super', 'switch', 'this', 'throw', 'true', 'try', 'typeof', 'var', 'void', 'while', 'with', 'yield',
  'let', 'static', 'implements', 'interface', 'package', 'private', 'protected', 'public', 'await', 'arguments', 'eval',
]);

/**
 * `order-history` → `orderHistory`.
 *
 * @example
 * ```ts
 * camelCase('order-history'); // 'orderHistory'
 * ```
 */
export function camelCase(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, char: string) => char.toUpperCase());
}

/**
 * `order-history` → `OrderHistory`.
 *
 * @example
 * ```ts
 * pascalCase('order-history'); // 'OrderHistory'
 * ```
 */
export function pascalCase(name: string): string {
  const camel = camelCase(name);
  return camel.charAt(0).toUpperCase() + camel.slice(1);
}

/**
 * Checks a module name and returns it, or throws `E_INVALID_NAME` saying what would be valid.
 *
 * @example
 * ```ts
 * assertModuleName('billing'); // 'billing'
 * assertModuleName('Billing'); // throws CLIError E_INVALID_NAME
 * ```
 */
export function assertModuleName(name: string, what = 'Module name'): string {
  if (!MODULE_NAME_PATTERN.test(name)) {
    const suggestion = name
      .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^[^a-z]+|-+$/g, '');
    throw new CLIError(
      CliErrorCode.E_INVALID_NAME,
      `${what} "${name}" is not lower-kebab-case (letters, digits and single dashes, starting with a letter)` +
        (suggestion && MODULE_NAME_PATTERN.test(suggestion) ? `; try "${suggestion}".` : '.'),
    );
  }
  if (RESERVED.has(name)) {
    throw new CLIError(CliErrorCode.E_INVALID_NAME, `${what} "${name}" is reserved; choose a name that says what the module does.`);
  }
  return name;
}

// The identifiers the generated files import or declare (contract.ts, module.ts and the module's
// test): a module whose contract identifier (or `<identifier>Module`) is one of them would not compile.
const GENERATED_IDENTIFIERS = new Set([
  'z', 'defineContract', 'operation', 'event', 'text', 'defineModule', 'db', 'get', 'emit', 'logger',
  'describe', 'it', 'expect', 'beforeAll', 'afterAll', 'isKeelError', 'modules', 'startApplication',
  'published', 'received', 'probeModule', 'app', 'client', 'error', 'caught',
]);

/**
 * Checks that the module to generate named `name` gets identifiers the generated files do not
 * already use (`z` would clash with zod's import), or throws `E_INVALID_NAME`.
 *
 * @example
 * ```ts
 * assertGeneratedIdentifiers('billing'); // 'billing'
 * assertGeneratedIdentifiers('z'); // throws CLIError E_INVALID_NAME
 * ```
 */
export function assertGeneratedIdentifiers(name: string, what = 'Module name'): string {
  const identifier = camelCase(name);
  if (GENERATED_IDENTIFIERS.has(identifier) || GENERATED_IDENTIFIERS.has(`${identifier}Module`)) {
    throw new CLIError(
      CliErrorCode.E_INVALID_NAME,
      `${what} "${name}" would be the identifier ${identifier}, which the generated files already use; choose another name.`,
    );
  }
  return name;
}

/**
 * Checks an event name (camelCase) and returns it.
 *
 * @example
 * ```ts
 * assertEventName('invoiceSent'); // 'invoiceSent'
 * ```
 */
export function assertEventName(name: string): string {
  if (!MEMBER_NAME_PATTERN.test(name)) {
    throw new CLIError(
      CliErrorCode.E_INVALID_NAME,
      `Event name "${name}" must be camelCase: letters and digits, the first a lower-case letter, such as "invoiceSent".`,
    );
  }
  return name;
}

/**
 * Checks an operation name (camelCase) and returns it.
 *
 * @example
 * ```ts
 * assertOperationName('sendInvoice'); // 'sendInvoice'
 * assertOperationName('send-invoice'); // throws CLIError E_INVALID_NAME
 * ```
 */
export function assertOperationName(name: string): string {
  if (!MEMBER_NAME_PATTERN.test(name)) {
    throw new CLIError(
      CliErrorCode.E_INVALID_NAME,
      `Operation name "${name}" must be camelCase: letters and digits, the first a lower-case letter, such as "sendInvoice".`,
    );
  }
  return name;
}

/**
 * Splits a comma-separated option value (`a,b , c`) into trimmed, non-empty, unique names.
 *
 * @example
 * ```ts
 * splitList('catalog, orders'); // ['catalog', 'orders']
 * ```
 */
export function splitList(value: string | undefined): string[] {
  if (value === undefined) return [];
  return [...new Set(value.split(',').map((item) => item.trim()).filter((item) => item.length > 0))];
}

/**
 * {@link splitList} of an option's value, refusing a value given that names nothing (`,`), which
 * would otherwise be taken as the option left out: `E_USAGE`, naming the option.
 *
 * @example
 * ```ts
 * namedList('catalog,orders', '--depends-on'); // ['catalog', 'orders']
 * namedList(undefined, '--depends-on'); // []
 * namedList(',', '--depends-on'); // throws E_USAGE: --depends-on "," names nothing; ...
 * ```
 */
export function namedList(value: string | undefined, option: string): string[] {
  const names = splitList(value);
  if (value !== undefined && names.length === 0) {
    throw new CLIError(CliErrorCode.E_USAGE, `${option} "${value}" names nothing; give at least one name, comma-separated, or leave ${option} out.`);
  }
  return names;
}

/** The `--modules` (or `KEEL_MODULES`) value that hosts no module: a pure client, such as an HTTP gateway. */
export const NO_MODULES = 'none';

/**
 * Refuses a process hosting {@link NO_MODULES} (`hosted` is `[]`) when no NATS server was given:
 * it reaches every module over NATS, and would have nothing to call. `E_USAGE`, as `keel start`
 * and `keel dev --modules none` both say it.
 *
 * @example
 * ```ts
 * assertNoneHasNats([], false); // throws E_USAGE: Hosting "none" makes a process that reaches every module over NATS, ...
 * assertNoneHasNats([], true); // passes
 * assertNoneHasNats(undefined, false); // passes: every module, in process
 * ```
 */
export function assertNoneHasNats(hosted: readonly string[] | undefined, nats: boolean): void {
  if (hosted?.length !== 0 || nats) return;
  throw new CLIError(CliErrorCode.E_USAGE, `Hosting "${NO_MODULES}" makes a process that reaches every module over NATS, and no NATS server was given.`, {
    hint: 'Pass --nats <url> (or set KEEL_NATS_URL): that of the processes hosting the modules (keel up, another keel dev), or name the modules to host here.',
  });
}

/**
 * The modules a process hosts, from `--modules` or `KEEL_MODULES` (`source` names which): undefined
 * when `text` is undefined (every module), `[]` for `none`; a list naming no module is `E_USAGE`.
 *
 * @example
 * ```ts
 * hostedList(' catalog, orders ', 'KEEL_MODULES'); // ['catalog', 'orders']
 * hostedList(',', '--modules'); // throws E_USAGE: --modules "," names no module; ...
 * ```
 */
export function hostedList(text: string | undefined, source: string): string[] | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (trimmed === NO_MODULES) return [];
  const names = splitList(trimmed);
  if (names.length === 0) {
    throw new CLIError(
      CliErrorCode.E_USAGE,
      `${source} "${trimmed}" names no module; name at least one, "${NO_MODULES}" to host nothing, or leave it out to host every module.`,
    );
  }
  return names;
}
