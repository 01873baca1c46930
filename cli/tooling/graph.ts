/**
 * `keel graph`: modules as nodes, calls and events as edges, optionally grouped by the
 * processes of a topology with the edges that become network hops made visible; rendered as
 * Mermaid (which GitHub renders in markdown) or Graphviz DOT.
 *
 * Call edges are labelled with the operations the caller's source actually calls: the tool
 * follows the clients `get(contract)` returns (`const stock = get(inventory); stock.reserve(…)`,
 * including clients handed to functions or classes typed `Client<typeof inventory>`). When no
 * call can be traced, the edge lists every operation of the callee's contract, marked `*`.
 * Event edges are labelled with the events the subscriber handles (its `events: { … }` map),
 * else every event of the publisher's contract.
 */
import type { AnyContract } from 'keel';
import { loadContracts, importWithNode, type ImportFile } from './contract-loader.js';
import { readModuleFacts } from './module-facts.js';
import { readSourceTree } from './source-tree.js';

/** A module of the graph. */
export interface GraphModule {
  /** The module's name: its contract's name. */
  readonly name: string;
  /** Its folder under `modules/`. */
  readonly folder: string;
  readonly operations: readonly string[];
  readonly events: readonly string[];
}

/** `from` calls `to`. */
export interface CallEdge {
  readonly from: string;
  readonly to: string;
  readonly operations: readonly string[];
  /** False when no call was found in the source and `operations` lists the whole contract. */
  readonly traced: boolean;
}

/** `from` publishes events that `to` handles. */
export interface EventEdge {
  readonly from: string;
  readonly to: string;
  readonly events: readonly string[];
}

/** The application's module graph. */
export interface ModuleGraph {
  readonly modules: readonly GraphModule[];
  readonly calls: readonly CallEdge[];
  readonly events: readonly EventEdge[];
}

/** The part of a topology the graph needs (the shape of `keel up` topology files). */
export interface GraphTopology {
  readonly processes: Readonly<Record<string, { readonly modules: readonly string[]; readonly replicas?: number }>>;
}

/** Output formats of `keel graph`. */
export const GraphFormat = {
  MERMAID: 'mermaid',
  DOT: 'dot',
  /** The {@link ModuleGraph} itself, and the topology's processes when one is given: for tools (`keel dev` reads it). */
  JSON: 'json',
} as const;

/** A {@link GraphFormat} value. */
export type GraphFormat = (typeof GraphFormat)[keyof typeof GraphFormat];

/**
 * Reads the module graph of the project at `root` from its source and contracts.
 *
 * @example
 * ```ts
 * const graph = await readModuleGraph('/repo');
 * graph.calls.find((edge) => edge.from === 'orders' && edge.to === 'inventory')?.operations; // ['reserve', 'release']
 * ```
 */
export async function readModuleGraph(root: string, importFile: ImportFile = importWithNode): Promise<ModuleGraph> {
  const tree = readSourceTree(root);
  const facts = readModuleFacts(tree);
  const { contracts } = await loadContracts(root, importFile);
  const contractOf = new Map<string, AnyContract>(contracts.map((loaded) => [loaded.folder, loaded.contract]));
  const nameOf = (folder: string) => contractOf.get(folder)?.name ?? folder;
  const modules: GraphModule[] = [...facts.keys()]
    .filter((folder) => tree.modules.get(folder)?.hasModule)
    .map((folder) => ({
      name: nameOf(folder),
      folder,
      operations: Object.keys(contractOf.get(folder)?.operations ?? {}),
      events: Object.keys(contractOf.get(folder)?.events ?? {}),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const calls: CallEdge[] = [];
  const events: EventEdge[] = [];
  for (const module of modules) {
    const fact = facts.get(module.folder);
    if (fact === undefined) continue;
    const seen = new Set<string>();
    for (const dependency of fact.dependsOn) {
      const folder = dependency.folder as string;
      if (seen.has(folder)) continue;
      seen.add(folder);
      const available = Object.keys(contractOf.get(folder)?.operations ?? {});
      const called = new Set(fact.calls.filter((call) => call.folder === folder).map((call) => call.operation));
      const traced = available.filter((operation) => called.has(operation));
      calls.push({ from: module.name, to: nameOf(folder), operations: traced.length > 0 ? traced : available, traced: traced.length > 0 });
    }
    const subscribed = new Set<string>();
    for (const source of fact.subscribesTo) {
      const folder = source.folder as string;
      if (subscribed.has(folder)) continue;
      subscribed.add(folder);
      const publisher = nameOf(folder);
      const available = Object.keys(contractOf.get(folder)?.events ?? {});
      const handled = fact.handledEvents.get(publisher) ?? [];
      const named = available.filter((event) => handled.includes(event));
      events.push({ from: publisher, to: module.name, events: named.length > 0 ? named : available });
    }
  }
  const order = (a: { from: string; to: string }, b: { from: string; to: string }) => a.from.localeCompare(b.from) || a.to.localeCompare(b.to);
  return { modules, calls: calls.sort(order), events: events.sort(order) };
}

/** A node of the drawing: one module, or one module placed in one process. */
interface Placement {
  readonly id: string;
  readonly module: string;
  readonly process: string | undefined;
}

interface DrawnEdge {
  readonly kind: 'call' | 'event';
  readonly from: Placement;
  readonly to: Placement;
  readonly label: readonly string[];
  readonly traced: boolean;
  /** True when the edge crosses processes: a network hop. */
  readonly remote: boolean;
}

interface Drawing {
  readonly groups: ReadonlyArray<{ readonly process: string | undefined; readonly replicas: number; readonly nodes: readonly Placement[] }>;
  readonly edges: readonly DrawnEdge[];
}

const UNPLACED = '(not hosted)';

function identifier(text: string): string {
  const id = text.replace(/[^A-Za-z0-9_]/g, '_');
  // Mermaid reads a node called `end` as the end of a subgraph.
  return id.toLowerCase() === 'end' ? `${id}_` : id;
}

function layout(graph: ModuleGraph, topology: GraphTopology | undefined): Drawing {
  if (topology === undefined) {
    const nodes = graph.modules.map((module) => ({ id: identifier(module.name), module: module.name, process: undefined }));
    const byName = new Map(nodes.map((node) => [node.module, node]));
    const edges: DrawnEdge[] = [];
    for (const call of graph.calls) {
      const from = byName.get(call.from);
      const to = byName.get(call.to);
      if (from && to) edges.push({ kind: 'call', from, to, label: call.operations, traced: call.traced, remote: false });
    }
    for (const event of graph.events) {
      const from = byName.get(event.from);
      const to = byName.get(event.to);
      if (from && to) edges.push({ kind: 'event', from, to, label: event.events, traced: true, remote: false });
    }
    return { groups: [{ process: undefined, replicas: 1, nodes }], edges };
  }
  const groups: Array<{ process: string | undefined; replicas: number; nodes: Placement[] }> = [];
  const placements = new Map<string, Placement[]>();
  const known = new Set(graph.modules.map((module) => module.name));
  for (const [process, group] of Object.entries(topology.processes)) {
    const nodes = group.modules
      .filter((module) => known.has(module))
      .map((module) => ({ id: identifier(`${process}__${module}`), module, process }));
    for (const node of nodes) placements.set(node.module, [...(placements.get(node.module) ?? []), node]);
    groups.push({ process, replicas: group.replicas ?? 1, nodes });
  }
  const unplaced = graph.modules
    .filter((module) => !placements.has(module.name))
    .map((module) => ({ id: identifier(`unplaced__${module.name}`), module: module.name, process: UNPLACED }));
  if (unplaced.length > 0) {
    for (const node of unplaced) placements.set(node.module, [node]);
    groups.push({ process: UNPLACED, replicas: 1, nodes: unplaced });
  }
  const edges: DrawnEdge[] = [];
  const connect = (kind: 'call' | 'event', from: string, to: string, label: readonly string[], traced: boolean): void => {
    for (const source of placements.get(from) ?? []) {
      const targets = placements.get(to) ?? [];
      const local = targets.find((target) => target.process === source.process);
      for (const target of local ? [local] : targets) {
        edges.push({ kind, from: source, to: target, label, traced, remote: target.process !== source.process });
      }
    }
  };
  for (const call of graph.calls) connect('call', call.from, call.to, call.operations, call.traced);
  for (const event of graph.events) connect('event', event.from, event.to, event.events, true);
  return { groups, edges };
}

function edgeLabel(edge: DrawnEdge, separator: string): string {
  const text = edge.label.join(separator) + (edge.traced ? '' : ' *');
  return edge.remote ? `${text}${separator === ', ' ? ' ' : separator}(NATS hop)` : text;
}

const HOP_COLOR = '#d9480f';

/**
 * Renders the graph as a Mermaid flowchart: solid arrows for calls, dashed arrows for events,
 * thick orange arrows for what crosses processes under the topology.
 *
 * @example
 * ```ts
 * const text = renderMermaid(await readModuleGraph(root), { processes: { web: { modules: ['orders'] }, back: { modules: ['inventory'] } } });
 * ```
 */
export function renderMermaid(graph: ModuleGraph, topology?: GraphTopology): string {
  const drawing = layout(graph, topology);
  const lines = ['flowchart LR'];
  for (const group of drawing.groups) {
    const indent = group.process === undefined ? '  ' : '    ';
    if (group.process !== undefined) {
      const title = group.replicas > 1 ? `${group.process} ×${group.replicas}` : group.process;
      lines.push(`  subgraph ${identifier(`process_${group.process}`)}["${title}"]`);
    }
    for (const node of group.nodes) lines.push(`${indent}${node.id}["${node.module}"]`);
    if (group.process !== undefined) lines.push('  end');
  }
  const hops: number[] = [];
  drawing.edges.forEach((edge, index) => {
    const arrow = edge.kind === 'event' ? '-.->' : edge.remote ? '==>' : '-->';
    lines.push(`  ${edge.from.id} ${arrow}|"${edgeLabel(edge, ', ')}"| ${edge.to.id}`);
    if (edge.remote) hops.push(index);
  });
  if (hops.length > 0) lines.push(`  linkStyle ${hops.join(',')} stroke:${HOP_COLOR},stroke-width:3px`);
  if (drawing.edges.some((edge) => !edge.traced)) {
    lines.push('  %% * no call traced in the source: the edge lists every operation of the contract');
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Renders the graph as Graphviz DOT: processes as clusters, events dashed, network hops thick
 * and orange.
 *
 * @example
 * ```ts
 * writeFileSync('graph.dot', renderDot(await readModuleGraph(root)));
 * ```
 */
export function renderDot(graph: ModuleGraph, topology?: GraphTopology): string {
  const drawing = layout(graph, topology);
  const quote = (text: string) => `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const lines = ['digraph keel {', '  rankdir=LR;', '  node [shape=box, style=rounded, fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];'];
  for (const group of drawing.groups) {
    const indent = group.process === undefined ? '  ' : '    ';
    if (group.process !== undefined) {
      const title = group.replicas > 1 ? `${group.process} ×${group.replicas}` : group.process;
      lines.push(`  subgraph ${quote(`cluster_${group.process}`)} {`, `    label=${quote(title)};`, '    style=dashed;');
    }
    for (const node of group.nodes) lines.push(`${indent}${quote(node.id)} [label=${quote(node.module)}];`);
    if (group.process !== undefined) lines.push('  }');
  }
  for (const edge of drawing.edges) {
    const attributes = [`label=${quote(edgeLabel(edge, '\u0000')).replace(/\u0000/g, '\\n')}`];
    if (edge.kind === 'event') attributes.push('style=dashed');
    if (edge.remote) attributes.push(`color=${quote(HOP_COLOR)}`, `fontcolor=${quote(HOP_COLOR)}`, 'penwidth=2.5');
    lines.push(`  ${quote(edge.from.id)} -> ${quote(edge.to.id)} [${attributes.join(', ')}];`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/**
 * Renders in the given format.
 *
 * @example
 * ```ts
 * process.stdout.write(renderGraph(graph, 'dot'));
 * ```
 */
export function renderGraph(graph: ModuleGraph, format: GraphFormat, topology?: GraphTopology): string {
  if (format === GraphFormat.JSON) return `${JSON.stringify(topology === undefined ? graph : { ...graph, processes: topology.processes }, null, 2)}\n`;
  return format === GraphFormat.DOT ? renderDot(graph, topology) : renderMermaid(graph, topology);
}
