/**
 * Generic graph searches for the cycle rules of `keel check`: the strongly connected
 * components of a directed graph, and one cycle through a node of a component. Nodes are
 * strings; edges are given as a function from a node to its successors.
 */

/** Strongly connected components (Tarjan), each in discovery order. */
export function components(nodes: readonly string[], edges: (node: string) => readonly string[]): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const lowLinks = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const result: string[][] = [];
  const connect = (node: string): void => {
    indices.set(node, index);
    lowLinks.set(node, index);
    index++;
    stack.push(node);
    onStack.add(node);
    for (const next of edges(node)) {
      if (!indices.has(next)) {
        connect(next);
        lowLinks.set(node, Math.min(lowLinks.get(node) as number, lowLinks.get(next) as number));
      } else if (onStack.has(next)) {
        lowLinks.set(node, Math.min(lowLinks.get(node) as number, indices.get(next) as number));
      }
    }
    if (lowLinks.get(node) === indices.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      result.push(component.reverse());
    }
  };
  for (const node of nodes) if (!indices.has(node)) connect(node);
  return result;
}

/** One cycle through `start` inside a component, ending at `start`. */
export function cycleThrough(start: string, members: ReadonlySet<string>, edges: (node: string) => readonly string[]): string[] {
  const path: string[] = [];
  const visited = new Set<string>();
  const search = (node: string): boolean => {
    path.push(node);
    for (const next of edges(node)) {
      if (!members.has(next)) continue;
      if (next === start) {
        path.push(start);
        return true;
      }
      if (!visited.has(next)) {
        visited.add(next);
        if (search(next)) return true;
      }
    }
    path.pop();
    return false;
  };
  search(start);
  return path;
}
