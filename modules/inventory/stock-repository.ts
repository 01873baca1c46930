/**
 * The inventory's SQL and its reservation state machine (the table in contract.ts), in the
 * module's own schema (migrations/). Private to the inventory module.
 *
 * Every method that changes stock must run in the caller's `db.transaction` (restock, one row,
 * opens its own, or joins the caller's): it locks the rows
 * it reads (`for update`) so that concurrent calls, in this process or in another instance,
 * see each other's effects. Rows are locked in one order everywhere, the reservation first,
 * then the stock rows by SKU, so that two transactions never wait for each other in a circle.
 */
import type { Database } from 'keel';
import type { Reservation, StockLevel, StockLine } from './contract.js';

/** Settings of the inventory module. */
export interface InventorySettings {
  /** `stockLow` is emitted when a reservation takes available units below this. */
  readonly lowStockThreshold: number;
}

/** Token of the {@link InventorySettings}. */
export const INVENTORY_SETTINGS = Symbol.for('inventory.settings');

/** Default {@link InventorySettings}. The stock a fresh shop starts with is in migrations/002_seed_stock.sql. */
export const DEFAULT_INVENTORY_SETTINGS: InventorySettings = { lowStockThreshold: 5 };

/** What {@link StockRepository.reserve} did. */
export type ReserveResult =
  | { readonly ok: true; readonly reservation: Reservation; readonly newlyLow: readonly StockLevel[] }
  | { readonly ok: false; readonly shortage: { sku: string; requested: number; available: number } };

type StockRow = { sku: string; on_hand: number; reserved: number };
type ReservationRow = { order_id: string; lines: StockLine[] | string; status: Reservation['status'] };

function toLevel(sku: string, row: StockRow | undefined): StockLevel {
  const onHand = row?.on_hand ?? 0;
  const reserved = row?.reserved ?? 0;
  return { sku, onHand, reserved, available: onHand - reserved };
}

function toReservation(row: ReservationRow): Reservation {
  const lines = typeof row.lines === 'string' ? (JSON.parse(row.lines) as StockLine[]) : row.lines;
  return { orderId: row.order_id, lines, status: row.status };
}

/** SKU order: the one order in which stock rows are locked. */
const bySku = (a: StockLine, b: StockLine): number => (a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : 0);

/** Stock by SKU and reservations by order id. */
export class StockRepository {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** True when the SKU has ever been stocked here. */
  async tracks(sku: string): Promise<boolean> {
    return (await this.#db.query('select 1 from stock where sku = $1', [sku])).rowCount > 0;
  }

  /** The stock of `sku`: zero for a SKU never stocked. */
  async level(sku: string): Promise<StockLevel> {
    const { rows } = await this.#db.query<StockRow>('select sku, on_hand, reserved from stock where sku = $1', [sku]);
    return toLevel(sku, rows[0]);
  }

  /**
   * Adds `quantity` units of `sku` unless that takes it past `limit` on hand: then `full` with the
   * level that refused it, read in the same transaction (the row locked), and nothing changed.
   */
  async restock(sku: string, quantity: number, limit: number): Promise<{ readonly level: StockLevel; readonly full: boolean }> {
    // The statement's where clause bounds an update only: a new row of more than `limit` is refused here.
    if (quantity > limit) return { level: await this.level(sku), full: true };
    return this.#db.transaction(async () => {
      // The sum is compared in bigint: the integer column would overflow before the comparison could refuse it.
      const { rows } = await this.#db.query<StockRow>(
        'insert into stock (sku, on_hand, reserved) values ($1, $2, 0) ' +
          'on conflict (sku) do update set on_hand = stock.on_hand + excluded.on_hand ' +
          'where stock.on_hand::bigint + excluded.on_hand <= $3 returning sku, on_hand, reserved',
        [sku, quantity, limit],
      );
      if (rows[0] !== undefined) return { level: toLevel(sku, rows[0]), full: false };
      // Refused by the where clause: the row exists, and the conflict locked it for this transaction.
      const current = await this.#db.query<StockRow>('select sku, on_hand, reserved from stock where sku = $1', [sku]);
      return { level: toLevel(sku, current.rows[0]), full: true };
    });
  }

  /**
   * Reserves every line or none. An order id seen before returns its reservation unchanged:
   * the reservation row is claimed first, so a concurrent reserve of the same order waits for
   * this one and then finds it.
   */
  async reserve(orderId: string, lines: readonly StockLine[], lowStockThreshold: number): Promise<ReserveResult> {
    const merged = mergeLines(lines);
    const claimed = await this.#db.query(
      "insert into reservations (order_id, lines, status) values ($1, $2, 'reserved') on conflict (order_id) do nothing",
      [orderId, JSON.stringify(merged)],
    );
    if (claimed.rowCount === 0) return { ok: true, reservation: (await this.reservation(orderId)) as Reservation, newlyLow: [] };

    const { rows } = await this.#db.query<StockRow>(
      'select sku, on_hand, reserved from stock where sku = any($1::text[]) order by sku for update',
      [merged.map((line) => line.sku)],
    );
    const before = new Map(rows.map((row) => [row.sku, toLevel(row.sku, row)]));
    for (const line of merged) {
      const available = before.get(line.sku)?.available ?? 0;
      // The caller's transaction rolls back, and the claimed reservation row with it.
      if (available < line.quantity) return { ok: false, shortage: { sku: line.sku, requested: line.quantity, available } };
    }
    const newlyLow: StockLevel[] = [];
    for (const line of [...merged].sort(bySku)) {
      const after = await this.#move(line.sku, { reserved: line.quantity });
      if ((before.get(line.sku)?.available ?? 0) >= lowStockThreshold && after.available < lowStockThreshold) newlyLow.push(after);
    }
    return { ok: true, reservation: { orderId, lines: merged, status: 'reserved' }, newlyLow };
  }

  /** reserved → released. Anything else stays; an unknown order id is recorded as released, lines empty. */
  async release(orderId: string): Promise<Reservation> {
    const tombstone = await this.#db.query(
      "insert into reservations (order_id, lines, status) values ($1, '[]', 'released') on conflict (order_id) do nothing",
      [orderId],
    );
    if (tombstone.rowCount === 1) return { orderId, lines: [], status: 'released' };
    const reservation = (await this.reservation(orderId, true)) as Reservation;
    if (reservation.status !== 'reserved') return reservation;
    for (const line of [...reservation.lines].sort(bySku)) await this.#move(line.sku, { reserved: -line.quantity });
    return this.#transition(reservation, 'released');
  }

  /** reserved → committed: the units leave the shelf. Undefined for an unknown order id. */
  async commit(orderId: string): Promise<Reservation | undefined> {
    const reservation = await this.reservation(orderId, true);
    if (reservation?.status !== 'reserved') return reservation;
    for (const line of [...reservation.lines].sort(bySku)) await this.#move(line.sku, { onHand: -line.quantity, reserved: -line.quantity });
    return this.#transition(reservation, 'committed');
  }

  /** reserved → released, or committed → returned (the units go back on the shelf). */
  async cancel(orderId: string): Promise<Reservation | undefined> {
    const reservation = await this.reservation(orderId, true);
    if (reservation?.status === 'reserved') return this.release(orderId);
    if (reservation?.status !== 'committed') return reservation;
    for (const line of [...reservation.lines].sort(bySku)) await this.#move(line.sku, { onHand: line.quantity });
    return this.#transition(reservation, 'returned');
  }

  /** The order's reservation, locked until the transaction ends when `forUpdate`. */
  async reservation(orderId: string, forUpdate = false): Promise<Reservation | undefined> {
    const { rows } = await this.#db.query<ReservationRow>(
      `select order_id, lines, status from reservations where order_id = $1${forUpdate ? ' for update' : ''}`,
      [orderId],
    );
    return rows[0] === undefined ? undefined : toReservation(rows[0]);
  }

  /** Adds to (or, negative, takes from) a stocked SKU's units; returns its new level. */
  async #move(sku: string, change: { onHand?: number; reserved?: number }): Promise<StockLevel> {
    const { rows } = await this.#db.query<StockRow>(
      'update stock set on_hand = on_hand + $2, reserved = reserved + $3 where sku = $1 returning sku, on_hand, reserved',
      [sku, change.onHand ?? 0, change.reserved ?? 0],
    );
    return toLevel(sku, rows[0]);
  }

  async #transition(reservation: Reservation, status: Reservation['status']): Promise<Reservation> {
    await this.#db.query('update reservations set status = $2, updated_at = now() where order_id = $1', [reservation.orderId, status]);
    return { ...reservation, status };
  }
}

/** One line per SKU, quantities summed, in first-seen order. */
function mergeLines(lines: readonly StockLine[]): StockLine[] {
  const bySkuTotal = new Map<string, number>();
  for (const line of lines) bySkuTotal.set(line.sku, (bySkuTotal.get(line.sku) ?? 0) + line.quantity);
  return [...bySkuTotal].map(([sku, quantity]) => ({ sku, quantity }));
}
