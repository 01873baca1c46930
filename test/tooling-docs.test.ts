import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runKeel, type CliRun } from './support/cli.js';

const repository = fileURLToPath(new URL('..', import.meta.url));
const PROMPT = '$ npm run keel --silent -- ';

async function keel(argv: readonly string[]): Promise<CliRun> {
  return runKeel(argv, { cwd: repository });
}

interface Block {
  readonly language: string;
  readonly lines: readonly string[];
}

function fencedBlocks(file: string): Block[] {
  const blocks: Block[] = [];
  let open: { language: string; lines: string[] } | undefined;
  for (const line of readFileSync(`${repository}/${file}`, 'utf8').split('\n')) {
    if (line.startsWith('```')) {
      if (open === undefined) open = { language: line.slice(3).trim(), lines: [] };
      else {
        blocks.push(open);
        open = undefined;
      }
    } else {
      open?.lines.push(line);
    }
  }
  return blocks;
}

interface Shown {
  readonly file: string;
  readonly argv: readonly string[];
  readonly output: string;
}

/**
 * Every `$ npm run keel --silent -- <command>` of a console block, with the lines under it (up to
 * the next prompt). Left out: `status`, which needs the shop running, and background (`&`) lines.
 */
function shownCommands(file: string): Shown[] {
  const shown: Shown[] = [];
  for (const block of fencedBlocks(file).filter((entry) => entry.language === 'console')) {
    let current: { argv: string[]; output: string[] } | undefined;
    const finish = () => {
      if (current) shown.push({ file, argv: current.argv, output: current.output.join('\n').trimEnd() });
      current = undefined;
    };
    for (const line of block.lines) {
      if (line.startsWith('$ ')) {
        finish();
        if (!line.startsWith(PROMPT) || line.trimEnd().endsWith('&')) continue;
        const argv = line.slice(PROMPT.length).trim().split(/\s+/);
        if (argv[0] !== 'status') current = { argv, output: [] };
      } else {
        current?.output.push(line);
      }
    }
    finish();
  }
  return shown;
}

const documents = ['README.md', 'docs/tooling.md'] as const;
const shown = documents.flatMap(shownCommands);

describe('tooling - documented output', () => {
  it('tooling - README and docs/tooling.md show check, contracts diff and graph output', () => {
    const commands = (file: string) => shown.filter((entry) => entry.file === file).map((entry) => entry.argv.slice(0, 2).join(' '));
    expect(commands('README.md')).toEqual(expect.arrayContaining(['check', 'contracts diff']));
    expect(commands('docs/tooling.md')).toEqual(expect.arrayContaining(['check', 'contracts diff', 'graph', 'graph --topology']));
  });

  it.each(shown.map((entry) => [`${entry.file}: keel ${entry.argv.join(' ')}`, entry] as const))(
    'tooling - %s prints what the document shows',
    async (_, { argv, output }) => {
      const result = await keel(argv);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout.trimEnd(), `keel ${argv.join(' ')} now prints this; update the document`).toBe(output);
    },
  );

  it('tooling - the README diagram is what keel graph draws for topologies/split.ts', async () => {
    const diagrams = fencedBlocks('README.md').filter((block) => block.language === 'mermaid');
    expect(diagrams).toHaveLength(1);
    const { code, stdout } = await keel(['graph', '--topology', 'topologies/split.ts']);
    expect(code).toBe(0);
    expect(diagrams[0]?.lines.join('\n'), 'README.md\'s mermaid block; paste `npm run keel --silent -- graph --topology topologies/split.ts`').toBe(
      stdout.trimEnd(),
    );
  });

  it('tooling - every diagram of docs/tooling.md is one keel graph draws', async () => {
    const drawn = await Promise.all([keel(['graph']), keel(['graph', '--topology', 'topologies/split.ts'])]);
    const diagrams = fencedBlocks('docs/tooling.md').filter((block) => block.language === 'mermaid');
    expect(diagrams.length).toBeGreaterThan(0);
    for (const diagram of diagrams) {
      expect(drawn.map((result) => result.stdout.trimEnd())).toContain(diagram.lines.join('\n'));
    }
  });
});
