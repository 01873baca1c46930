create table products (
  sku text primary key,
  name text not null,
  price_cents integer not null check (price_cents > 0),
  created_at timestamptz not null default now()
);
