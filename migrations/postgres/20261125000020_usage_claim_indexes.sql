-- Metering flush (ADR 0005): make a claim cost O(claimed rows), not O(usage_hours).

-- Due hours in claim order: `state = 'open' ORDER BY hour, id` reads the first rows of this
-- index and stops (the old (state, hour) index left each hour's rows to be sorted by id);
-- retries are found among the `sending` rows, which are only those in flight or waiting.
DROP INDEX usage_hours_due;
CREATE INDEX usage_hours_due ON usage_hours (state, hour, id);
-- The hours of one claim, loaded with their subscriptions and allocations right after it.
CREATE INDEX usage_hours_lease ON usage_hours (lease_id) WHERE lease_id IS NOT NULL;
-- Subscriptions in their unsubscribe-pending window: their open hours are due at once.
CREATE INDEX subscriptions_unsubscribe_pending ON subscriptions (id)
    WHERE status = 'unsubscribe_pending';
