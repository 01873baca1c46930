/**
 * The inventory's data: stock per SKU and reservations per order, in memory. Private to the
 * inventory module. Every method runs synchronously, so each one is atomic with respect to
 * concurrent calls in this process.
 */
import { inject, injectable } from 'inversify';
import type { Reservation, StockLevel, StockLine } from './contract.js';

/** Settings of the inventory module. */
export interface InventorySettings {
  /** `stockLow` is emitted when a reservation takes available units below this. */
  readonly lowStockThreshold: number;
  /** Units on hand at start, by SKU (the catalog's seeded products). */
  readonly seed: Readonly<Record<string, number>>;
}

/** Token of the {@link InventorySettings}. */
export const INVENTORY_SETTINGS = Symbol.for('inventory.settings');

/** Default {@link InventorySettings}: stock for the products the catalog is seeded with. */
export const DEFAULT_INVENTORY_SETTINGS: InventorySettings = {
  lowStockThreshold: 5,
  seed: { 'KB-001': 25, 'MS-001': 40, 'MN-027': 6, 'CB-USB-C': 120 },
};

/** What {@link StockStore.reserve} did. */
export type ReserveResult =
  | { readonly ok: true; readonly reservation: Reservation; readonly newlyLow: readonly StockLevel[] }
  | { readonly ok: false; readonly shortage: { sku: string; requested: number; available: number } };

interface Stock {
  onHand: number;
  reserved: number;
}

/** Stock by SKU and reservations by order id. */
@injectable()
export class StockStore {
  readonly #stock = new Map<string, Stock>();
  readonly #reservations = new Map<string, Reservation>();
  readonly #threshold: number;

  constructor(@inject(INVENTORY_SETTINGS) settings: InventorySettings) {
    this.#threshold = settings.lowStockThreshold;
    for (const [sku, onHand] of Object.entries(settings.seed)) this.#stock.set(sku, { onHand, reserved: 0 });
  }

  get lowStockThreshold(): number {
    return this.#threshold;
  }

  /** True when the SKU has ever been stocked here. */
  tracks(sku: string): boolean {
    return this.#stock.has(sku);
  }

  level(sku: string): StockLevel {
    const stock = this.#stock.get(sku) ?? { onHand: 0, reserved: 0 };
    return { sku, onHand: stock.onHand, reserved: stock.reserved, available: stock.onHand - stock.reserved };
  }

  restock(sku: string, quantity: number): StockLevel {
    const stock = this.#entry(sku);
    stock.onHand += quantity;
    return this.level(sku);
  }

  /** Reserves every line or none. An order id seen before returns its reservation unchanged. */
  reserve(orderId: string, lines: readonly StockLine[]): ReserveResult {
    const existing = this.#reservations.get(orderId);
    if (existing !== undefined) return { ok: true, reservation: existing, newlyLow: [] };
    const merged = mergeLines(lines);
    for (const line of merged) {
      const available = this.level(line.sku).available;
      if (available < line.quantity) {
        return { ok: false, shortage: { sku: line.sku, requested: line.quantity, available } };
      }
    }
    const newlyLow: StockLevel[] = [];
    for (const line of merged) {
      const before = this.level(line.sku).available;
      this.#entry(line.sku).reserved += line.quantity;
      const after = this.level(line.sku);
      if (before >= this.#threshold && after.available < this.#threshold) newlyLow.push(after);
    }
    const reservation: Reservation = { orderId, lines: merged, status: 'reserved' };
    this.#reservations.set(orderId, reservation);
    return { ok: true, reservation, newlyLow };
  }

  /** reserved → released. Anything else stays; an unknown order id is recorded as released. */
  release(orderId: string): Reservation {
    const reservation = this.#reservations.get(orderId);
    if (reservation === undefined) {
      const tombstone: Reservation = { orderId, lines: [], status: 'released' };
      this.#reservations.set(orderId, tombstone);
      return tombstone;
    }
    if (reservation.status !== 'reserved') return reservation;
    for (const line of reservation.lines) this.#entry(line.sku).reserved -= line.quantity;
    return this.#transition(reservation, 'released');
  }

  /** reserved → committed: the units leave the shelf. Undefined for an unknown order id. */
  commit(orderId: string): Reservation | undefined {
    const reservation = this.#reservations.get(orderId);
    if (reservation?.status !== 'reserved') return reservation;
    for (const line of reservation.lines) {
      const stock = this.#entry(line.sku);
      stock.reserved -= line.quantity;
      stock.onHand -= line.quantity;
    }
    return this.#transition(reservation, 'committed');
  }

  /** reserved → released, or committed → returned (the units go back on the shelf). */
  cancel(orderId: string): Reservation | undefined {
    const reservation = this.#reservations.get(orderId);
    if (reservation?.status === 'reserved') return this.release(orderId);
    if (reservation?.status !== 'committed') return reservation;
    for (const line of reservation.lines) this.#entry(line.sku).onHand += line.quantity;
    return this.#transition(reservation, 'returned');
  }

  #transition(reservation: Reservation, status: Reservation['status']): Reservation {
    const next = { ...reservation, status };
    this.#reservations.set(reservation.orderId, next);
    return next;
  }

  #entry(sku: string): Stock {
    let stock = this.#stock.get(sku);
    if (stock === undefined) {
      stock = { onHand: 0, reserved: 0 };
      this.#stock.set(sku, stock);
    }
    return stock;
  }
}

/** One line per SKU, quantities summed, in first-seen order. */
function mergeLines(lines: readonly StockLine[]): StockLine[] {
  const bySku = new Map<string, number>();
  for (const line of lines) bySku.set(line.sku, (bySku.get(line.sku) ?? 0) + line.quantity);
  return [...bySku].map(([sku, quantity]) => ({ sku, quantity }));
}
