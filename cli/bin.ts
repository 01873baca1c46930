#!/usr/bin/env node
/**
 * The `keel` executable. It turns on Node's module compile cache (Node 22.1 and later; the
 * bytecode of keel, its dependencies and the application is kept under the OS temporary folder,
 * so the next start of the same files skips compiling them; `NODE_DISABLE_COMPILE_CACHE=1`
 * turns it off), then loads the command runner: static imports would compile before the cache
 * is on.
 */
import module from 'node:module';

(module as { enableCompileCache?: () => unknown }).enableCompileCache?.();
await import('./executable.js');
