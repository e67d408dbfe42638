-- Retries and expired leases found by time (ADR 0025). A claim now sets `next_attempt_at` to
-- its lease's end, so a `sending` hour is due once `next_attempt_at` has passed, whether it
-- waits for a retry or its flusher's lease ran out: one range of this index. Before, claims
-- walked every `sending` row of `usage_hours_due` (all hours in flight, and the dead entries
-- of those settled since the last vacuum) to check each row's times.
--
-- Only `sending` rows are in it, so it costs a write when an hour is claimed and nothing when
-- it is delivered. The predicate is written `state || ''` as the claim's condition is: with a
-- plain `state = 'sending'` the planner reads `usage_hours_due` in (hour, id) order instead,
-- expecting most `sending` rows to be due. An index added; the previous release's statements
-- neither use nor mind it.
CREATE INDEX usage_hours_sending_due ON usage_hours (next_attempt_at)
    WHERE state || '' = 'sending';
