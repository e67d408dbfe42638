-- Claims read their hours by the due-hours index and settle them by id (ADR 0008), so nothing
-- looks hours up by lease any more; this index only cost two writes per hour sent.
DROP INDEX usage_hours_lease;
