-- The entitlement index loads what changed since its watermark, in (updated_at, id) order.
CREATE INDEX subscriptions_changed ON subscriptions (updated_at, id);
