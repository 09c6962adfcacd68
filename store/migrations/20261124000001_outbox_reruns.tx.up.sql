-- How many times the outbox sweep has run an archived task again (archived
-- on the dashboard, or by asynq after a last attempt that recorded nothing).
-- The sweep stops at a bound, so work that can never finish is not run
-- forever: it stays archived, unfinished, for an operator.
ALTER TABLE outbox ADD COLUMN reruns integer NOT NULL DEFAULT 0;
