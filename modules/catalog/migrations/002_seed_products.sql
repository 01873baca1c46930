-- The products a fresh shop sells, so that `npm start` has something to show.
--
-- Seed data is a migration rather than code run at every start: it is applied once, in the
-- same transaction as the table it fills, recorded like any other migration, and the same on
-- PGlite and PostgreSQL. A product an operator later changes or removes stays as they left it,
-- where an idempotent insert at start would bring it back on the next restart.
insert into products (sku, name, price_cents) values
  ('KB-001', 'Mechanical keyboard', 8900),
  ('MS-001', 'Wireless mouse', 3450),
  ('MN-027', '27-inch monitor', 27900),
  ('CB-USB-C', 'USB-C cable, 2 m', 1299);
