-- Captured payments, at most one per order: the order id is the charge's idempotency key.
create table payments (
  payment_id text primary key,
  order_id text not null unique,
  customer_id text not null,
  amount_cents integer not null check (amount_cents > 0),
  status text not null check (status in ('captured', 'refunded')),
  captured_at timestamptz not null,
  refunded_at timestamptz,
  seq bigint generated always as identity
);
create index payments_by_customer on payments (customer_id, seq);

-- Orders whose charge was cancelled before one was captured: a charge arriving later captures nothing.
create table cancelled_charges (
  order_id text primary key,
  cancelled_at timestamptz not null default now()
);
