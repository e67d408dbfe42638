-- An hour's accepted usage where the marketplace caps what one hour may total (AWS: a
-- BatchMeterUsage record's Quantity is at most 2,147,483,647). Ingest adds each batch's new
-- events to these rows in its own transaction (the row lock makes concurrent requests for the
-- same hour take turns) and refuses the batch if one goes past its cap, so a 202 never stands
-- for usage the marketplace will refuse. `cap_micros` is the cap the last batch was checked
-- against.
CREATE TABLE usage_capped_hours (
    subscription_id UUID NOT NULL,
    dimension       TEXT NOT NULL,
    hour            BIGINT NOT NULL,
    quantity_micros BIGINT NOT NULL,
    cap_micros      BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, dimension, hour)
);

-- Hours that can still take usage (every marketplace's window is at most a day) start from
-- what the ledger already holds for them.
INSERT INTO usage_capped_hours (subscription_id, dimension, hour, quantity_micros, cap_micros)
    SELECT subscription_id, dimension, hour, SUM(quantity_micros), 9223372036854775807
    FROM usage_events
    WHERE hour >= (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT - 2 * 86400000
    GROUP BY subscription_id, dimension, hour;
