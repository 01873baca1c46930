-- Messages sent to customers, at most one per order and topic (whatever the events' ids).
create table notifications (
  notification_id text primary key,
  customer_id text not null,
  channel text not null,
  topic text not null,
  order_id text not null,
  subject text not null,
  body text not null,
  sent_at timestamptz not null,
  seq bigint generated always as identity,
  unique (topic, order_id)
);
create index notifications_by_customer on notifications (customer_id, seq);
