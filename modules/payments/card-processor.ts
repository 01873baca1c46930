/**
 * The simulated card processor. A real shop would call its payment provider here; this one
 * decides from the card token and the amount so that every outcome can be tried by hand.
 */
import { CHARGE_LIMIT_CENTS, TestCard, type DeclineReason } from './contract.js';

/** The processor's answer: approved, or declined with a reason. */
export type ProcessorDecision = { readonly approved: true } | { readonly approved: false; readonly reason: DeclineReason };

/** Decides whether `token` may be charged `amountCents`. */
export function authorize(token: string, amountCents: number): ProcessorDecision {
  if (token === TestCard.DECLINED) return { approved: false, reason: 'card_declined' };
  if (token === TestCard.INSUFFICIENT_FUNDS) return { approved: false, reason: 'insufficient_funds' };
  if (amountCents > CHARGE_LIMIT_CENTS) return { approved: false, reason: 'amount_over_limit' };
  return { approved: true };
}
