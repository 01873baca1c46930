/**
 * The types a contract's schemas give by inference: what a caller passes and gets back, what a
 * handler takes and returns, an event's payload as published and as received, and the errors an
 * operation declares. Each is one `z.input` or `z.output` of a schema; nothing is generated.
 */
import type { z } from 'zod';
import type { AnyEvent, AnyOperation } from './contract.js';

/**
 * Input type a caller passes to operation `Op` (before defaults and coercion).
 *
 * @example
 * ```ts
 * // internal to the kernel: an application writes z.input<typeof orders.operations.placeOrder.input>
 *
 * const input: OperationInput<typeof orders.operations.placeOrder> = {
 *   customerId: 'c-42',
 *   lines: [{ sku: 'KB-001', quantity: 1 }],
 *   card: { token: 'tok_visa' },
 * };
 * ```
 */
export type OperationInput<Op extends AnyOperation> = z.input<Op['input']>;
/**
 * Input type a handler of `Op` receives (after parsing).
 *
 * @example
 * ```ts
 * import type { HandlerInput } from 'keel';
 *
 * const unitsOf = (input: HandlerInput<typeof inventory.operations.reserve>): number =>
 *   input.lines.reduce((sum, line) => sum + line.quantity, 0);
 * ```
 */
export type HandlerInput<Op extends AnyOperation> = z.output<Op['input']>;
/**
 * Value a handler of `Op` returns (before output parsing).
 *
 * @example
 * ```ts
 * import type { HandlerOutput } from 'keel';
 *
 * const levelOf = (sku: string, onHand: number, reserved: number): HandlerOutput<typeof inventory.operations.getStock> =>
 *   ({ sku, onHand, reserved, available: onHand - reserved });
 * ```
 */
export type HandlerOutput<Op extends AnyOperation> = z.input<Op['output']>;
/**
 * Value a caller of `Op` receives.
 *
 * @example
 * ```ts
 * // internal to the kernel: an application writes z.output<typeof orders.operations.placeOrder.output>
 *
 * type PlacedOrder = OperationOutput<typeof orders.operations.placeOrder>; // the contract's Order
 * const summary = (order: PlacedOrder): string => `${order.orderId}: ${order.totalCents} cents`;
 * ```
 */
export type OperationOutput<Op extends AnyOperation> = z.output<Op['output']>;
/**
 * Payload type a publisher passes for event `Ev`.
 *
 * @example
 * ```ts
 * // internal to the kernel: an application writes z.input<typeof inventory.events.stockLow.payload>
 *
 * const low: EventInput<typeof inventory.events.stockLow> = { sku: 'KB-001', available: 2, threshold: 5 };
 * await emit('stockLow', low); // inside the inventory module
 * ```
 */
export type EventInput<Ev extends AnyEvent> = z.input<Ev['payload']>;
/**
 * Payload type a subscriber receives for event `Ev`.
 *
 * @example
 * ```ts
 * // internal to the kernel: an application writes z.output<typeof orders.events.orderPlaced.payload>
 *
 * const confirm = (placed: EventPayload<typeof orders.events.orderPlaced>): string =>
 *   `Order ${placed.orderId} confirmed: ${placed.totalCents} cents`;
 * ```
 */
export type EventPayload<Ev extends AnyEvent> = z.output<Ev['payload']>;
/**
 * Union of the declared error instances of `Op`.
 *
 * @example
 * ```ts
 * // internal to the kernel: an application names the declared classes (OutOfStock, PaymentDeclined, ...)
 *
 * function explain(error: DeclaredErrorOf<typeof orders.operations.placeOrder>): string {
 *   if (error.code === 'OUT_OF_STOCK') return `only ${error.data.available} of ${error.data.sku} left`;
 *   if (error.code === 'PAYMENT_DECLINED') return `card declined: ${error.data.reason}`;
 *   return `unknown product ${error.data.sku}`;
 * }
 * ```
 */
export type DeclaredErrorOf<Op extends AnyOperation> = InstanceType<Op['errors'][number]>;
