-- Metering (ADR 0005), PostgreSQL dialect. Quantities are integer millionths of a unit; hours are the Unix
-- milliseconds of the hour's start (UTC).

-- Usage as the vendor reported it, one row per event, kept for audit. A client idempotency key
-- is unique per subscription, so a resent event is stored once.
CREATE TABLE usage_events (
    id              UUID PRIMARY KEY,
    subscription_id UUID NOT NULL REFERENCES subscriptions (id),
    dimension       TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    quantity_micros BIGINT NOT NULL,
    idempotency_key TEXT,
    allocations     JSONB,
    received_at     BIGINT NOT NULL,
    CONSTRAINT usage_events_idempotency_key UNIQUE (subscription_id, idempotency_key)
);

-- One hourly total per subscription, dimension and hour: what is sent to the marketplace.
-- open → (claimed) sending → delivered | mismatch | dead | skipped. Once a row leaves `open`
-- its quantity is frozen: a resend must be identical for the marketplace to de-duplicate it.
CREATE TABLE usage_hours (
    id                    UUID PRIMARY KEY,
    subscription_id       UUID NOT NULL REFERENCES subscriptions (id),
    marketplace           TEXT NOT NULL,
    dimension             TEXT NOT NULL,
    hour                  BIGINT NOT NULL,
    quantity_micros       BIGINT NOT NULL,
    state                 TEXT NOT NULL,
    attempts              BIGINT NOT NULL DEFAULT 0,
    next_attempt_at       BIGINT NOT NULL,
    locked_until          BIGINT,
    lease_id              UUID,
    sent_quantity_micros  BIGINT,
    first_sent_at         BIGINT,
    marketplace_record_id TEXT,
    outcome               TEXT,
    last_error            TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    CONSTRAINT usage_hours_key UNIQUE (subscription_id, dimension, hour)
);
CREATE INDEX usage_hours_due ON usage_hours (state, hour);

-- AWS cost-allocation tags of an hour's usage, summed per tag set.
CREATE TABLE usage_allocations (
    usage_hour_id   UUID NOT NULL REFERENCES usage_hours (id),
    tags            TEXT NOT NULL,
    quantity_micros BIGINT NOT NULL,
    PRIMARY KEY (usage_hour_id, tags)
);

-- Up to which hour zero-quantity records have been created for a subscription (AWS expects a
-- record for every active hour, seed 001).
CREATE TABLE usage_cursors (
    subscription_id UUID PRIMARY KEY REFERENCES subscriptions (id),
    zero_from       BIGINT NOT NULL
);
