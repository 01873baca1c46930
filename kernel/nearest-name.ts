/**
 * The name a misspelt key most likely meant, for the "Did you mean" of every refusal of an unknown
 * option, call option or module field. Off every hot path: it runs only when a key is refused.
 */

/**
 * Edit distance between `a` and `b` counting an insertion, a deletion, a substitution and a swap
 * of two neighbours each as one (the optimal string alignment distance), so that `prot` is one
 * edit from `port`, as `gatway` is from `gateway`.
 */
function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const columns = b.length + 1;
  const cost: number[] = new Array<number>(rows * columns);
  for (let i = 0; i < rows; i += 1) cost[i * columns] = i;
  for (let j = 0; j < columns; j += 1) cost[j] = j;
  for (let i = 1; i < rows; i += 1) {
    for (let j = 1; j < columns; j += 1) {
      const substitution = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(
        (cost[(i - 1) * columns + j] as number) + 1,
        (cost[i * columns + j - 1] as number) + 1,
        (cost[(i - 1) * columns + j - 1] as number) + substitution,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, (cost[(i - 2) * columns + j - 2] as number) + 1);
      }
      cost[i * columns + j] = best;
    }
  }
  return cost[rows * columns - 1] as number;
}

/**
 * The name of `known` that `given` most likely meant, or `undefined` when none is close. In this
 * order: the same name but for case (`certfile`: `certFile`); the fewest edits, at most one for a
 * name of up to four letters, two up to eight, three beyond (`prot`: `port`, `timeout`:
 * `timeoutMs`), the first of `known` on a tie; a name that `given` begins (`sig`: `signal`); the
 * name sharing the longest beginning with `given`, when it is four letters or more and half the
 * longer of the two (`timeoutMillis`: `timeoutMs`, `retries`: `retry`, but not `deadline`:
 * `deadLetterMaxAgeMs`, nor `publishTimeout`: `publishAttempts`). Case is ignored throughout.
 *
 * @example
 * ```ts
 * nearestName('prot', ['kernel', 'port', 'host']); // 'port'
 * nearestName('colour', ['level', 'format']); // undefined
 * ```
 */
export function nearestName(given: string, known: readonly string[]): string | undefined {
  const wanted = given.toLowerCase();
  const names = known.map((name) => name.toLowerCase());
  const same = names.indexOf(wanted);
  if (same !== -1) return known[same];
  const limit = wanted.length <= 4 ? 1 : wanted.length <= 8 ? 2 : 3;
  let nearest: string | undefined;
  let fewest = limit + 1;
  names.forEach((name, index) => {
    // A name whose length alone is further off than the best so far cannot beat it.
    if (Math.abs(name.length - wanted.length) >= fewest) return;
    const edits = editDistance(wanted, name);
    if (edits < fewest) {
      fewest = edits;
      nearest = known[index];
    }
  });
  if (nearest !== undefined) return nearest;
  if (wanted.length < 3) return undefined;
  const begun = names.findIndex((name) => name.startsWith(wanted));
  if (begun !== -1) return known[begun];
  // A shared beginning: long enough to be more than a common word (`max`, `dead`, `publish`).
  let shared: string | undefined;
  let longest = 3;
  names.forEach((name, index) => {
    let common = 0;
    while (common < name.length && common < wanted.length && name[common] === wanted[common]) common += 1;
    if (common > longest && common * 2 >= Math.max(name.length, wanted.length)) {
      longest = common;
      shared = known[index];
    }
  });
  return shared;
}

/**
 * The "did you mean" of a refusal of several unknown keys at once, each guess naming its key
 * (shown by `label`) when there are several: `'did you mean port? '`, `'did you mean port for
 * "prot", host for "hots"? '`, or `''` when no key is close to a name of `known`.
 */
export function didYouMean(keys: readonly string[], known: readonly string[], label: (key: string) => string): string {
  const guesses = keys.flatMap((key) => {
    const near = nearestName(key, known);
    if (near === undefined) return [];
    return [keys.length > 1 ? `${near} for ${label(key)}` : near];
  });
  return guesses.length === 0 ? '' : `did you mean ${guesses.join(', ')}? `;
}
