-- 006: the finish statement takes its batch as one array of job_queue_finished records, one finished attempt as
-- the daemon sends it (queue.sql, finish), instead of nine parallel arrays: asyncpg checks each element of an
-- array parameter, so a job's attempt is checked once, not nine times.
CREATE TYPE job_queue_finished AS (
    id              uuid,
    attempt         integer,
    status          text,
    outcome         text,
    result          text,  -- JSON text (a jsonb field would need the connection's jsonb codec in binary format)
    error           text,
    run_at          timestamptz,
    finished_epoch  float8,
    duration_ms     integer
);

COMMENT ON TYPE job_queue_finished IS 'One finished attempt as the worker daemon records it (finish in queue.sql).';
