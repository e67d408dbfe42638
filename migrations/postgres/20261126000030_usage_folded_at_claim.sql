-- Usage is folded into its hourly totals when the flusher claims, not in the request
-- (ADR 0010). A request only appends events; a claim locks the ledger against writers
-- (SHARE ROW EXCLUSIVE), adds every event past the watermark to its hour, then moves the
-- watermark.
--
-- `seq` numbers events. Its sequence must not cache values (CACHE 1, the default): a value is
-- then only ever taken by an INSERT that holds the ledger's ROW EXCLUSIVE lock until its
-- transaction ends, so once a claim holds its lock every numbered event is committed or gone,
-- and none can later appear below the watermark. `id` stays the event's identity but needs no
-- index: nothing looks an event up by it.
ALTER TABLE usage_events ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 1);
ALTER TABLE usage_events DROP CONSTRAINT usage_events_pkey;
ALTER TABLE usage_events ADD PRIMARY KEY (seq);

-- The last event already in `usage_hours`: all events stored so far were folded by their
-- request.
CREATE TABLE usage_fold (
    id              SMALLINT PRIMARY KEY CHECK (id = 1),
    folded_through  BIGINT NOT NULL
);
INSERT INTO usage_fold (id, folded_through) SELECT 1, COALESCE(MAX(seq), 0) FROM usage_events;
