-- Periodic jobs that one replica at a time should run (ADR 0007): the next run of each is due
-- at `next_at` (Unix milliseconds), and the replica that moves it forward runs it.
CREATE TABLE periodic_runs (
    name    TEXT PRIMARY KEY NOT NULL,
    next_at BIGINT NOT NULL
);
