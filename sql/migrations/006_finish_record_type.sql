-- 006: the finish statement's batch as one array of records.
-- A batch of finished attempts was sent as nine parallel arrays. asyncpg checks every element of an array
-- parameter against three abstract base classes (is it a nested array?), a few microseconds of the daemon's
-- CPU per job spent on isinstance() alone; one array of records costs those checks once per job, not nine
-- times. The type describes one finished attempt as the daemon sends it (see queue.sql, finish).
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
