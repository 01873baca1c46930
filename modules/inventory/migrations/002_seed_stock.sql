-- Stock for the products the catalog's migrations seed (a migration, not a seed at start: see
-- the catalog's 002_seed_products.sql). The inventory has its own schema and may have its own
-- database, so it seeds its own rows; the SKUs match by convention.
insert into stock (sku, on_hand, reserved) values
  ('KB-001', 25, 0),
  ('MS-001', 40, 0),
  ('MN-027', 6, 0),
  ('CB-USB-C', 120, 0);
