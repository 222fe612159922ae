-- 018: the listings' order and cleanup's walk move from job_queue_created_idx to job_queue_pkey, and that index
-- goes. Every job wrote three entries to it (its insert, and the new row versions of its claim and its finish:
-- status is in the partial indexes' predicates, so those are never HOT updates) and every vacuum of job_queue
-- scanned it whole (docs/maintenance.md, "Index entries per job").
-- Since 015 a job's id is a version-7 UUID whose first 48 bits are its created_at in Unix milliseconds, so
-- job_queue_pkey already holds those jobs in created order. The listings run newest first by (created_at in
-- milliseconds, id): the jobs whose id carries their created_at's millisecond over job_queue_pkey, the others
-- (ids stored before 015, an id or a created_at a client wrote itself) over job_queue_untimed_created_idx,
-- merged (job_queue_list below; tests/test_listing_order.py).

-- Milliseconds since the Unix epoch, rounded down: the same float8 015's ids take their time from (date_part
-- over the interval since the epoch is immutable; over a timestamptz it is only stable). 'infinity' and
-- '-infinity' (a created_at a client may write) sort after and before every finite time. Not STRICT, as none of the
-- functions below that call it: a strict SQL function whose body holds a CASE is not inlined, and these run for
-- every row version.
CREATE FUNCTION job_queue_millis(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN isfinite(t) THEN floor(date_part('epoch', t - timestamptz 'epoch') * 1000)::bigint
        WHEN t > timestamptz 'epoch' THEN 4611686018427387904  -- 2^62: past every finite time, short of the
        WHEN t < timestamptz 'epoch' THEN -4611686018427387904 -- bigint bounds the listing's open ends take
    END
$$;

-- 015's id for a given time, taken from job_queue_millis: a version-7 UUID whose first 48 bits are `t` in
-- milliseconds. For rows written with a created_at of their own (tests, benches, imports): such an id keeps the
-- row in job_queue_pkey's created order.
CREATE FUNCTION job_queue_uuidv7_at(t timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(job_queue_millis(t)) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- job_queue.id's default, as 015's: an id made by it always carries its row's created_at (both are now()).
CREATE OR REPLACE FUNCTION job_queue_uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT job_queue_uuidv7_at(now())
$$;

-- Whether the id's first 48 bits are the created_at's millisecond: such a job sits in job_queue_pkey at its
-- place in created order. Evaluated for each new row version of job_queue (the predicate below): byte
-- strings compared, no clock read.
CREATE FUNCTION job_queue_id_carries(id uuid, created_at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT substring(uuid_send(id) FROM 1 FOR 6) = substring(int8send(job_queue_millis(created_at)) FROM 3)
$$;

-- The least UUID whose first 48 bits are `ms`: the ids carrying a time before `ms` sort below it, those of
-- `ms` and later at or above it. Before 1970: the nil UUID; past the 48 bits: the greatest UUID.
CREATE FUNCTION job_queue_id_floor(ms bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN ms < 0 THEN '00000000-0000-0000-0000-000000000000'::uuid
        WHEN ms >= 281474976710656 THEN 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid
        ELSE encode(substring(int8send(ms) FROM 3) || '\x00000000000000000000'::bytea, 'hex')::uuid
    END
$$;

-- The jobs whose id does not carry their created_at, in created order: the listings' second branch. A job
-- enqueued with the default id (the daemon, the CLI, the HTTP trigger, an INSERT that leaves id out) writes
-- no entry here.
CREATE INDEX job_queue_untimed_created_idx ON job_queue (job_queue_millis(created_at), id)
    WHERE NOT job_queue_id_carries(id, created_at);

-- One page of the listings, newest first by (created_at in milliseconds, id), after (after_ms, after_id) when
-- given: the jobs whose id carries their created_at walk job_queue_pkey backwards, the others
-- job_queue_untimed_created_idx, each at most n rows, and the two are merged. The filters by status, task type
-- and error text step over the rows they reject. `enable_sort = off`: whatever the statistics say, the pkey
-- branch is the ordered walk that stops after n rows, never a bitmap scan of the whole range and a sort (the
-- merge sorts the 2n rows it gets). The pkey walk starts a day past now: below that bound it steps over only
-- the few random ids that sort among the time-ordered ones (tests/test_listing_order.py).
CREATE FUNCTION job_queue_list(
    status_is text, task_type_is text, created_from timestamptz, created_before timestamptz, error_like text,
    after_ms bigint, after_id uuid, n integer
) RETURNS TABLE (
    id uuid, task_type text, status text, priority integer, run_at timestamptz, attempts integer,
    max_attempts integer, last_error text, dedupe_key text, locked_by text, created_at timestamptz,
    finished_at timestamptz, listed_ms bigint
)
LANGUAGE sql STABLE
SET enable_sort = off
SET enable_incremental_sort = off
SET jit = off
AS $$
    WITH b AS (
        SELECT job_queue_id_floor(coalesce(job_queue_millis(created_from), -1)) AS timed_from,
               least(job_queue_id_floor(job_queue_millis(now() + interval '1 day') + 1),
                     job_queue_id_floor(job_queue_millis(created_before)),
                     -- after (ms, id): the ids of earlier milliseconds, and those of ms itself below id
                     greatest(least(after_id, job_queue_id_floor(least(after_ms, 281474976710656) + 1)),
                              job_queue_id_floor(after_ms))
               ) AS timed_before,
               coalesce(job_queue_millis(created_from), -9223372036854775808) AS untimed_from,
               coalesce(job_queue_millis(created_before), 9223372036854775807) AS untimed_before,
               coalesce(after_ms, 9223372036854775807) AS key_ms,
               coalesce(after_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff') AS key_id
    )
    SELECT l.id, l.task_type, l.status, l.priority, l.run_at, l.attempts, l.max_attempts, l.last_error,
           l.dedupe_key, l.locked_by, l.created_at, l.finished_at, l.listed_ms
    FROM (
        (SELECT j.*, job_queue_millis(j.created_at) AS listed_ms
         FROM job_queue AS j
         WHERE j.id >= (SELECT timed_from FROM b) AND j.id < (SELECT timed_before FROM b)
           AND job_queue_id_carries(j.id, j.created_at)
           AND (status_is IS NULL OR j.status = status_is)
           AND (task_type_is IS NULL OR j.task_type = task_type_is)
           AND (error_like IS NULL OR j.last_error ILIKE error_like)
         ORDER BY j.id DESC
         LIMIT n)
        UNION ALL
        (SELECT j.*, job_queue_millis(j.created_at) AS listed_ms
         FROM job_queue AS j
         WHERE NOT job_queue_id_carries(j.id, j.created_at)
           AND job_queue_millis(j.created_at) >= (SELECT untimed_from FROM b)
           AND job_queue_millis(j.created_at) < (SELECT untimed_before FROM b)
           AND (job_queue_millis(j.created_at), j.id) < ((SELECT key_ms FROM b), (SELECT key_id FROM b))
           AND (status_is IS NULL OR j.status = status_is)
           AND (task_type_is IS NULL OR j.task_type = task_type_is)
           AND (error_like IS NULL OR j.last_error ILIKE error_like)
         ORDER BY job_queue_millis(j.created_at) DESC, j.id DESC
         LIMIT n)
    ) AS l
    ORDER BY l.listed_ms DESC, l.id DESC
    LIMIT n
$$;

-- Up to n finished jobs past their retention (succeeded_s for succeeded ones, failed_s for failed and cancelled
-- ones), in id order after `after`, locked: retention cleanup's batch (operator.sql cleanup_batch). A batch
-- walks job_queue_pkey from `after`, the id where the run's previous batch stopped, so it never re-reads the dead
-- entries of the run's earlier batches nor the rows it kept. `enable_sort = off`: whatever the statistics say
-- (taken while the queue held few expired jobs, say), the batch is that walk, never a scan of the whole table
-- and a sort of every expired job (tests/test_cleanup.py). SKIP LOCKED: a job an operator retries meanwhile is
-- not deleted, and two cleanups never wait for each other.
CREATE FUNCTION job_queue_expired(succeeded_s float8, failed_s float8, n integer, after uuid) RETURNS SETOF uuid
LANGUAGE sql VOLATILE
SET enable_sort = off
SET enable_incremental_sort = off
SET jit = off
AS $$
    SELECT j.id FROM job_queue AS j
    WHERE j.status IN ('succeeded', 'failed', 'cancelled')
      AND j.finished_at < now() - make_interval(
            secs => CASE WHEN j.status = 'succeeded' THEN succeeded_s ELSE failed_s END)
      AND j.id > after
    ORDER BY j.id
    LIMIT n
    FOR UPDATE SKIP LOCKED
$$;

DROP INDEX job_queue_created_idx;

COMMENT ON FUNCTION job_queue_millis(timestamptz) IS 'Milliseconds since the Unix epoch, rounded down.';
COMMENT ON FUNCTION job_queue_id_carries(uuid, timestamptz) IS
    'Whether the id''s first 48 bits are the time''s millisecond (a version-7 id made at that time).';
COMMENT ON FUNCTION job_queue_uuidv7_at(timestamptz) IS
    'A version-7 UUID whose time is the given one: the id of a job whose created_at is that time.';
COMMENT ON FUNCTION job_queue_id_floor(bigint) IS 'The least UUID whose first 48 bits are the given milliseconds.';
COMMENT ON FUNCTION job_queue_expired(float8, float8, integer, uuid) IS
    'Retention cleanup''s batch: up to n expired finished jobs in id order after an id, locked.';
COMMENT ON FUNCTION job_queue_list(text, text, timestamptz, timestamptz, text, bigint, uuid, integer) IS
    'A page of jobs, newest first by (created_at in milliseconds, id), after a key: the listings of the admin and the CLI.';
