import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readModuleGraph, renderDot, renderMermaid, type GraphTopology } from '../cli/tooling/graph.js';
import { runKeel, type CliRun } from './support/cli.js';

const repository = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/tooling/check/${name}/`, import.meta.url));

async function keel(argv: string[], cwd = repository): Promise<CliRun> {
  return runKeel(argv, { cwd });
}

const SPLIT: GraphTopology = {
  processes: {
    web: { modules: ['beta'], replicas: 2 },
    back: { modules: ['alpha'] },
  },
};

describe('tooling - graph', () => {
  it('tooling - graph labels calls with the operations the caller calls, and events with those it handles', async () => {
    const graph = await readModuleGraph(fixture('clean'));
    expect(graph.modules.map((module) => [module.name, module.operations, module.events])).toEqual([
      ['alpha', ['getItem'], ['itemChanged']],
      ['beta', ['describe'], []],
    ]);
    expect(graph.calls).toEqual([{ from: 'beta', to: 'alpha', operations: ['getItem'], traced: true }]);
    expect(graph.events).toEqual([{ from: 'alpha', to: 'beta', events: ['itemChanged'] }]);
  });

  it('tooling - graph follows clients passed to helpers typed Client<typeof contract> in the shop', async () => {
    const graph = await readModuleGraph(repository);
    const call = (from: string, to: string) => graph.calls.find((edge) => edge.from === from && edge.to === to);
    // orders releases stock in a helper that receives the inventory client as a parameter.
    expect(call('orders', 'inventory')).toMatchObject({ traced: true });
    expect(call('orders', 'inventory')?.operations).toContain('release');
    expect(call('orders', 'inventory')?.operations).toContain('reserve');
    expect(call('orders', 'catalog')?.operations).toEqual(['getProduct']);
    expect(graph.events.some((edge) => edge.from === 'orders' && edge.events.includes('orderPlaced'))).toBe(true);
  });

  it('tooling - graph draws calls solid and events dashed in mermaid', async () => {
    const text = renderMermaid(await readModuleGraph(fixture('clean')));
    expect(text).toBe(
      [
        'flowchart LR',
        '  alpha["alpha"]',
        '  beta["beta"]',
        '  beta -->|"getItem"| alpha',
        '  alpha -.->|"itemChanged"| beta',
        '',
      ].join('\n'),
    );
  });

  it('tooling - graph groups modules by process and makes network hops visible', async () => {
    const graph = await readModuleGraph(fixture('clean'));
    expect(renderMermaid(graph, SPLIT)).toBe(
      [
        'flowchart LR',
        '  subgraph process_web["web ×2"]',
        '    web__beta["beta"]',
        '  end',
        '  subgraph process_back["back"]',
        '    back__alpha["alpha"]',
        '  end',
        '  web__beta ==>|"getItem (NATS hop)"| back__alpha',
        '  back__alpha -.->|"itemChanged (NATS hop)"| web__beta',
        '  linkStyle 0,1 stroke:#d9480f,stroke-width:3px',
        '',
      ].join('\n'),
    );
    const together = renderMermaid(graph, { processes: { app: { modules: ['alpha', 'beta'] } } });
    expect(together).toContain('  app__beta -->|"getItem"| app__alpha');
    expect(together).not.toContain('linkStyle');
  });

  it('tooling - graph renders Graphviz DOT with clusters, dashed events and highlighted hops', async () => {
    const text = renderDot(await readModuleGraph(fixture('clean')), SPLIT);
    expect(text).toContain('subgraph "cluster_web" {');
    expect(text).toContain('label="web ×2";');
    expect(text).toContain('"web__beta" -> "back__alpha" [label="getItem\\n(NATS hop)", color="#d9480f", fontcolor="#d9480f", penwidth=2.5];');
    expect(text).toContain('"back__alpha" -> "web__beta" [label="itemChanged\\n(NATS hop)", style=dashed, color="#d9480f"');
  });

  it('tooling - graph command reads a keel up topology file', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'keel-graph-'));
    const file = join(directory, 'split.json');
    writeFileSync(
      file,
      JSON.stringify({ processes: { storefront: { modules: ['catalog', 'orders'] }, back: { modules: ['inventory', 'payments', 'notifications'] } } }),
    );
    const { code, stdout, stderr } = await keel(['graph', '--topology', file]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^flowchart LR$/m);
    expect(stdout).toContain('subgraph process_storefront["storefront"]');
    expect(stdout).toMatch(/storefront__orders ==>\|"[^"]*reserve[^"]*\(NATS hop\)"\| back__inventory/);
    expect(stdout).toContain('storefront__orders -->|"getProduct"| storefront__catalog');

    const dot = await keel(['graph', '--format', 'dot']);
    expect(dot.code).toBe(0);
    expect(dot.stdout).toMatch(/^digraph keel \{$/m);
  });

  it('tooling - graph command refuses a topology that does not match the manifest', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'keel-graph-'));
    const file = join(directory, 'bad.json');
    writeFileSync(file, JSON.stringify({ processes: { app: { modules: ['catalog'] } } }));
    const { code, stderr } = await keel(['graph', '--topology', file]);
    expect(code).toBe(1);
    expect(stderr).toContain('error E_TOPOLOGY');
  });
});
