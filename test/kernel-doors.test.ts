/**
 * keel's public doors, pinned name by name: `'keel'` for application authors, `'keel/transport'`
 * for adapter and tooling authors, and the two browser-safe doors, `'keel/contract'` for contract
 * files and `'keel/http-client'` for callers over HTTP. A name added to either door, or moved
 * between them, fails here until it is added to these lists on purpose. docs/design-notes.md
 * ("Public doors") says what belongs in which.
 */
import { readFileSync } from 'node:fs';
import { parseSync } from 'oxc-parser';
import { describe, expect, it } from 'vitest';
import * as keel from 'keel';
import * as transport from 'keel/transport';
import * as contractDoor from 'keel/contract';
import * as httpClientDoor from 'keel/http-client';

/** `'keel'`: what a contract, a module, a kernel and a test of an application need. */
const KEEL = {
  values: [
    'ErrorKind',
    'KeelError',
    'KeelErrorCode',
    'callSignal',
    'createKernel',
    'currentContext',
    'defineContract',
    'defineError',
    'defineModule',
    'event',
    'isKeelError',
    'operation',
    'runWithContext',
    'silentLogger',
    'text',
  ],
  types: [
    'AnyContract',
    'AnyErrorClass',
    'AnyModule',
    'CallContext',
    'CircuitBreakerPolicy',
    'Client',
    'Contract',
    'Database',
    'DatabaseEngine',
    'Emit',
    'ErrorClass',
    'EventDefinition',
    'HandlerInput',
    'HandlerOutput',
    'HedgePolicy',
    'Kernel',
    'KernelOptions',
    'Logger',
    'Module',
    'OperationAuth',
    'OperationDefinition',
    'Principal',
    'Register',
    'RetryBudgetPolicy',
    'RetryPolicy',
    'Transport',
  ],
};

/** `'keel/transport'`: what transports, the HTTP gateway, observers, the CLI's tools and keel's tests need. */
const TRANSPORT = {
  values: [
    'ContractError',
    'DEFAULT_CALL_POLICIES',
    'DEFAULT_KERNEL_OPTIONS',
    'DEFAULT_LOCAL_TRANSPORT_OPTIONS',
    'DEFAULT_TIMEOUT_MS',
    'DataOptionsSchema',
    'DeadlineScheduler',
    'EXTERNAL_CALLER',
    'Fanout',
    'GATEWAY_CLOSE_MARGIN_MS',
    'GIVEN_BACK_OUTCOME',
    'InFlight',
    'KEEL_ROOT_CONTEXT',
    'KeelContextManager',
    'KeyedLogThrottle',
    'LogFormat',
    'LogThrottle',
    'MAX_TIMEOUT_MS',
    'OK_OUTCOME',
    'RemoteFailure',
    'ResilienceOptionsSchema',
    'STATUS_BY_ERROR_KIND',
    'callAbandoned',
    'callLogFields',
    'cancelledError',
    'createClient',
    'createLocalTransport',
    'createLogger',
    'definedOnly',
    'describeValue',
    'disableTracing',
    'enableTracing',
    'fromErrorEnvelope',
    'gatewayCloseBoundMs',
    'isContract',
    'isCorrelationId',
    'isDatabaseUnreachable',
    'isErrorEnvelope',
    'isGivenBack',
    'isIdempotencyKey',
    'isTraceparent',
    'keelTracer',
    'kernelStopBoundMs',
    'logFields',
    'logFormatOf',
    'loggerOption',
    'majorOf',
    'migrate',
    'migrationStatus',
    'nearestName',
    'newCorrelationId',
    'newTraceparent',
    'noRespondersError',
    'parseOptions',
    'quoteIdentifier',
    'readMigrations',
    'roleOf',
    'schemaOf',
    'schemaSetup',
    'spanContextOf',
    'startSpanWith',
    'timeoutError',
    'toErrorEnvelope',
    'traceparentOf',
    'tracingRequested',
    'unknownOperationFailure',
    'unwatchSignal',
    'versionMismatchFailure',
    'watchSignal',
    'within',
  ],
  types: [
    'AbortableCall',
    'Answer',
    'AnyOperation',
    'CallOptions',
    'CallRecord',
    'CircuitStatus',
    'ClientOptions',
    'DatabaseEngine',
    'DeadLetter',
    'DeadlineEntry',
    'DroppedRecord',
    'ErrorEnvelope',
    'EventMetadata',
    'EventRecord',
    'EventSubscription',
    'GatewayDeadlines',
    'KernelObserver',
    'LocalTransport',
    'LocalTransportOptions',
    'LogDestination',
    'LoggerOptions',
    'MigrateOptions',
    'Migration',
    'MigrationState',
    'OperationAddress',
    'PublishedEvent',
    'QueryResult',
    'Registration',
    'RetryRecord',
    'Row',
    'SchemaConnection',
    'ServedModule',
    'SqlRunner',
    'TracingOptions',
    'Transport',
    'TransportCallOptions',
    'TransportStatus',
  ],
};

/** `'keel/contract'`: what a contract file needs and a caller catches; every name is also in `'keel'`. */
const CONTRACT = {
  values: ['ErrorKind', 'KeelError', 'KeelErrorCode', 'defineContract', 'defineError', 'event', 'isKeelError', 'operation', 'text'],
  types: [
    'AnyContract',
    'AnyErrorClass',
    'Contract',
    'ErrorClass',
    'EventDefinition',
    'HedgePolicy',
    'OperationAuth',
    'OperationDefinition',
    'Principal',
    'RetryPolicy',
  ],
};

/** `'keel/http-client'`: the typed client over the HTTP gateway. */
const HTTP_CLIENT = {
  values: ['DEFAULT_HTTP_CLIENT_OPTIONS', 'createHttpClient'],
  types: ['HttpCallOptions', 'HttpClient', 'HttpClientOptions', 'HttpHeaders'],
};

/** The names a door's source exports, values and types apart; a door re-exports by name only. */
function exportsOf(entry: string): { values: string[]; types: string[] } {
  const path = new URL(`../kernel/${entry}`, import.meta.url);
  const { program, errors } = parseSync(entry, readFileSync(path, 'utf8'));
  expect(errors).toEqual([]);
  const values: string[] = [];
  const types: string[] = [];
  for (const statement of program.body) {
    expect(statement.type, `${entry} declares or imports nothing and has no export *`).toBe('ExportNamedDeclaration');
    if (statement.type !== 'ExportNamedDeclaration') continue;
    expect(statement.declaration, `${entry} re-exports only`).toBeNull();
    for (const specifier of statement.specifiers) {
      const name = specifier.exported.type === 'Identifier' ? specifier.exported.name : String(specifier.exported.value);
      (statement.exportKind === 'type' || specifier.exportKind === 'type' ? types : values).push(name);
    }
  }
  return { values: values.sort(), types: types.sort() };
}

describe('kernel - public doors', () => {
  it("kernel - 'keel' exports exactly the application authors' names", () => {
    expect(exportsOf('index.ts')).toEqual(KEEL);
    expect(Object.keys(keel).sort()).toEqual(KEEL.values);
  });

  it("kernel - 'keel/transport' exports exactly the adapter and tooling authors' names", () => {
    expect(exportsOf('transport-entry.ts')).toEqual(TRANSPORT);
    expect(Object.keys(transport).sort()).toEqual(TRANSPORT.values);
  });

  it('kernel - the doors share no names but the ports an application hands to createKernel and an adapter implements: DatabaseEngine and Transport', () => {
    const keelNames = [...KEEL.values, ...KEEL.types];
    expect([...TRANSPORT.values, ...TRANSPORT.types].filter((name) => keelNames.includes(name))).toEqual(['DatabaseEngine', 'Transport']);
  });

  it("kernel - 'keel/contract' exports exactly what a contract file needs, each the very value 'keel' exports", () => {
    expect(exportsOf('contract-entry.ts')).toEqual(CONTRACT);
    expect(Object.keys(contractDoor).sort()).toEqual(CONTRACT.values);
    const keelNames: readonly string[] = [...KEEL.values, ...KEEL.types];
    expect([...CONTRACT.values, ...CONTRACT.types].filter((name) => !keelNames.includes(name))).toEqual([]);
    // Identity, not likeness: a class declared with defineError is matched with instanceof.
    for (const name of CONTRACT.values) {
      expect((contractDoor as Record<string, unknown>)[name], name).toBe((keel as Record<string, unknown>)[name]);
    }
  });

  it("kernel - 'keel/http-client' exports exactly the HTTP client's names, none of another door's", () => {
    expect(exportsOf('http-client-entry.ts')).toEqual(HTTP_CLIENT);
    expect(Object.keys(httpClientDoor).sort()).toEqual(HTTP_CLIENT.values);
    const others = [...KEEL.values, ...KEEL.types, ...TRANSPORT.values, ...TRANSPORT.types, ...CONTRACT.values, ...CONTRACT.types];
    expect([...HTTP_CLIENT.values, ...HTTP_CLIENT.types].filter((name) => others.includes(name))).toEqual([]);
  });
});
