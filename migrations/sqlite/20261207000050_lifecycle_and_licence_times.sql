-- The marketplace's time of the change that led to a subscription's current status, and of
-- its current licence. Deliveries arrive late and out of order (SQS, SNS and EventBridge
-- retry): an event older than these is stale and changes nothing, and an activation newer
-- than a cancellation is a buyer subscribing again rather than a late copy of the first one.
ALTER TABLE subscriptions ADD COLUMN status_as_of INTEGER;
ALTER TABLE subscriptions ADD COLUMN license_as_of INTEGER;

-- Existing subscriptions: the latest applied lifecycle event and licence change in their
-- timeline (which records each event's marketplace time); none known stays NULL.
UPDATE subscriptions SET status_as_of = (
    SELECT MAX(e.occurred_at) FROM subscription_events e
    WHERE e.subscription_id = subscriptions.id
      AND e.kind LIKE 'lifecycle:%' AND e.outcome = 'applied'
);
UPDATE subscriptions SET license_as_of = (
    SELECT MAX(e.occurred_at) FROM subscription_events e
    WHERE e.subscription_id = subscriptions.id
      AND e.kind = 'relicensed' AND e.outcome = 'applied'
);
