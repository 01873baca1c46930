-- Units per product: on the shelf, and held for orders (available = on_hand - reserved).
create table stock (
  sku text primary key,
  on_hand integer not null check (on_hand >= 0),
  reserved integer not null check (reserved >= 0 and reserved <= on_hand)
);

-- One reservation per order id (the order id is reserve's idempotency key), and where it stands.
create table reservations (
  order_id text primary key,
  lines jsonb not null,
  status text not null check (status in ('reserved', 'committed', 'released', 'returned')),
  updated_at timestamptz not null default now()
);
