-- Orders, including those not placed (yet): placeOrder records an order as pending before it
-- reserves stock and charges the card, so that whatever happens next, recovery finds it.
--
--   pending ──▶ placed ──▶ cancelling ──▶ cancelled
--      │                        └──▶ placed (the refund failed)
--      └──▶ compensating ──▶ failed
--
-- Callers see placed orders, and cancelling or cancelled ones as cancelled; pending,
-- compensating and failed orders are the saga's own.
create table orders (
  order_id text primary key,
  customer_id text not null,
  status text not null check (status in ('pending', 'placed', 'compensating', 'failed', 'cancelling', 'cancelled')),
  lines jsonb not null,
  total_cents integer not null,
  payment_id text,
  -- Why a failed order failed: { "code": ..., "message": ... }.
  failure jsonb,
  -- When the call driving the order (placeOrder, cancelOrder) gives up: recovery leaves the order
  -- alone until then. Written from the database's clock, as recovery compares it with now().
  deadline_at timestamptz not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  placed_at timestamptz,
  cancelled_at timestamptz,
  seq bigint generated always as identity
);
create index orders_by_customer on orders (customer_id, seq);
create index orders_unfinished on orders (updated_at) where status in ('pending', 'compensating', 'cancelling');
