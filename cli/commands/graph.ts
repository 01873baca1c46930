/**
 * `keel graph`: the modules, the calls between them (labelled with the operations called) and
 * the events they handle (dashed), as Mermaid or Graphviz DOT (or JSON, for tools); with a topology, modules are
 * grouped by process and the edges that cross processes are drawn as network hops.
 */
import { contextOf, defineCommand } from '../command.js';
import { ROOT_ARG, importerFor, projectAt, topologyAt } from '../tooling/command-support.js';
import { GraphFormat, readModuleGraph, renderGraph } from '../tooling/graph.js';

export default defineCommand({
  meta: {
    name: 'graph',
    description: 'Draw the modules, their calls and events, grouped by process under a topology',
    examples: ['keel graph', 'keel graph --topology topologies/split.ts', 'keel graph --format dot | dot -Tsvg > graph.svg', 'keel graph --format json'],
  },
  args: {
    topology: { type: 'string', description: 'Topology file (as for `keel up`): group modules by process, show network hops', valueHint: 'file' },
    format: { type: 'enum', options: [GraphFormat.MERMAID, GraphFormat.DOT, GraphFormat.JSON], description: 'Output format (json: the graph as data, for tools)', default: GraphFormat.MERMAID },
    root: ROOT_ARG,
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const project = projectAt(cli.cwd, args.root);
    const topology = args.topology === undefined ? undefined : await topologyAt(project, cli.cwd, args.topology);
    const graph = await readModuleGraph(project.root, importerFor(project));
    cli.stdout.write(renderGraph(graph, args.format as GraphFormat, topology));
  },
});
