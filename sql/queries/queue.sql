-- Named queries of worker/queue.py. Parameters are positional ($n); nothing here is built from strings.

-- name: enqueue
-- $1 task_type, $2 payload, $3 run_at (null = now), $4 priority, $5 max_attempts, $6 dedupe_key
WITH ins AS (
    INSERT INTO job_queue (task_type, payload, run_at, priority, max_attempts, dedupe_key)
    VALUES ($1, $2, coalesce($3, now()), $4, $5, $6)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'running') DO NOTHING
    RETURNING id, true AS created
)
SELECT id, created FROM ins
UNION ALL
SELECT id, false FROM job_queue
WHERE $6::text IS NOT NULL AND dedupe_key = $6 AND status IN ('pending', 'running') AND NOT EXISTS (SELECT 1 FROM ins)
LIMIT 1;

-- name: enqueue_many
-- A batch of jobs of which at least one has a dedupe key; jobs whose dedupe key is taken are skipped. Parallel arrays,
-- one element per job: $1 task types, $2 payloads as JSON text (the client's checked encoding, cast here, not
-- encoded a second time by the driver), $3 run_at, $4 priorities, $5 max_attempts, $6 dedupe keys. An array the
-- client sends as null is a column the whole batch shares: $3 null is now(), $1 $4 $5 null take the batch's one
-- value from $7 task type, $8 priority, $9 max_attempts (one value sent, not one per job). Returns the created ids,
-- in the batch's order, as one array (a row per job is a record for the client to decode per job). The ids rise in
-- the batch's order (migration 020: job_queue_uuidv7_nth, one head per statement, evaluated once).
WITH ins AS (
    INSERT INTO job_queue (id, task_type, payload, run_at, priority, max_attempts, dedupe_key)
    SELECT job_queue_uuidv7_nth((SELECT job_queue_uuidv7_head()), t.n),
           coalesce(t.task_type, $7::text), t.payload::jsonb, coalesce(t.run_at, now()),
           coalesce(t.priority, $8::int), coalesce(t.max_attempts, $9::int), t.dedupe_key
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::int[], $6::text[]) WITH ORDINALITY
        AS t (task_type, payload, run_at, priority, max_attempts, dedupe_key, n)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'running') DO NOTHING
    RETURNING id
)
SELECT array_agg(id) FROM ins;

-- name: enqueue_many_no_dedupe
-- enqueue_many for a batch without any dedupe key: the same parameters but $6, and no ON CONFLICT clause, which
-- no row could meet (the dedupe index holds only rows with a key) but which makes each row's insert speculative.
WITH ins AS (
    INSERT INTO job_queue (id, task_type, payload, run_at, priority, max_attempts)
    SELECT job_queue_uuidv7_nth((SELECT job_queue_uuidv7_head()), t.n),
           coalesce(t.task_type, $6::text), t.payload::jsonb, coalesce(t.run_at, now()),
           coalesce(t.priority, $7::int), coalesce(t.max_attempts, $8::int)
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::int[]) WITH ORDINALITY
        AS t (task_type, payload, run_at, priority, max_attempts, n)
    RETURNING id
)
SELECT array_agg(id) FROM ins;

-- name: claim
-- $1 task types this worker handles, $2 how many, $3 worker id, $4 lease seconds, $5 the job to walk the claim
-- index from (null: from its head; migration 016).
-- The claimed jobs' start (now(): the same for every row) comes as Unix epoch seconds, which the client turns
-- into one datetime per claim instead of decoding a timestamp per row (exact to the microsecond either way).
-- date_part, not extract: extract computes a numeric, a few times the server's work per row.
-- The pick is job_queue_pick (migrations 008, 016): paused task types skipped, the due pending jobs walked in
-- job_queue_claim_idx's order and locked, under a plan that cannot sort every due job whatever the statistics
-- say (tests/test_claim_plan.py). The same `picked` CTE as recover_and_claim's (test_claim_plan guards it).
WITH picked AS (
    SELECT p.id
    FROM job_queue_pick($1::text[], $2::int, $5::uuid) AS p (id)
    -- The claim's commit need not be durable (evaluated once, as an InitPlan): a claim lost in a server
    -- crash leaves the job pending, and at-least-once delivery runs it again. Saves a WAL flush per claim.
    WHERE (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
),
claimed AS (
    UPDATE job_queue AS j
    SET status = 'running',
        attempts = j.attempts + 1,
        locked_by = $3,
        locked_until = now() + make_interval(secs => $4),
        started_at = now(),
        updated_at = now()
    WHERE j.id = ANY (ARRAY(SELECT id FROM picked))  -- an array, not a join: see recover_and_claim
    RETURNING j.id, j.task_type, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.started_at
)
SELECT id, task_type, payload, attempts, max_attempts, priority, date_part('epoch', started_at) AS started_epoch
FROM claimed
ORDER BY priority DESC, run_at, id;

-- name: recover_and_claim
-- The poll's one statement: recover expired leases (as recover_expired) and claim (as claim). Recovered jobs
-- turn pending and NOTIFY; they are claimed by the next fetch. Rows: kind = 'claimed' | 'recovered'.
-- Paused task types are skipped as in claim.
-- $1 task types, $2 how many, $3 worker id, $4 lease seconds, $5 the job to walk from (as claim), $6 recovery
-- limit.
WITH expired AS (
    SELECT id, locked_by, started_at
    FROM job_queue
    WHERE status = 'running' AND locked_until < now()
    ORDER BY locked_until
    LIMIT $6
    FOR UPDATE SKIP LOCKED
),
recovered AS (
    UPDATE job_queue AS j
    SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'pending' END,
        last_error = 'lease expired: worker ' || e.locked_by || ' stopped heartbeating during attempt '
                     || j.attempts,
        run_at = now(),
        locked_by = NULL,
        locked_until = NULL,
        finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
        updated_at = now()
    FROM expired AS e
    WHERE j.id = e.id
    RETURNING j.id, j.task_type, j.status, j.attempts, j.last_error, e.locked_by, e.started_at
),
ledger AS (
    INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, error, duration_ms)
    SELECT r.id, r.attempts, r.locked_by, coalesce(r.started_at, now()), now(), 'abandoned', r.last_error,
           greatest(0, (extract(epoch FROM now() - coalesce(r.started_at, now())) * 1000)::int)
    FROM recovered AS r
),
picked AS (
    SELECT p.id
    FROM job_queue_pick($1::text[], $2::int, $5::uuid) AS p (id)
    -- The claim's commit need not be durable (evaluated once, as an InitPlan): a claim lost in a server
    -- crash leaves the job pending, and at-least-once delivery runs it again. Saves a WAL flush per claim.
    WHERE (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
),
claimed AS (
    UPDATE job_queue AS j
    SET status = 'running',
        attempts = j.attempts + 1,
        locked_by = $3,
        locked_until = now() + make_interval(secs => $4),
        started_at = now(),
        updated_at = now()
    -- The picked ids as an array, not a join: joined, a large claim was planned as a hash over a sequential
    -- scan of job_queue (every row read, finished ones included, to update a few hundred); as an array the
    -- update reads just the claimed rows through the key, in the heap's order, so the rows are sorted below
    -- (the daemon starts claimed jobs in the order it gets them).
    WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.task_type, j.payload, j.attempts, j.max_attempts, j.priority, j.run_at, j.started_at
)
SELECT 'claimed' AS kind, c.id, c.task_type, c.payload, c.attempts, c.max_attempts, c.priority, c.run_at,
       date_part('epoch', c.started_at) AS started_epoch, NULL::text AS status, NULL::text AS locked_by
FROM claimed AS c
UNION ALL
SELECT 'recovered', r.id, r.task_type, NULL, r.attempts, NULL, NULL, NULL, NULL, r.status, r.locked_by
FROM recovered AS r
ORDER BY kind, priority DESC, run_at, id;

-- name: claim_ids
-- Claim exactly these jobs (run-now, /api/jobs/run with ids) if they are pending; paused or not due is fine.
WITH picked AS (
    SELECT id FROM job_queue
    WHERE id = ANY ($1::uuid[]) AND status = 'pending'
    FOR UPDATE SKIP LOCKED
)
UPDATE job_queue AS j
SET status = 'running',
    attempts = j.attempts + 1,
    locked_by = $2,
    locked_until = now() + make_interval(secs => $3),
    started_at = now(),
    updated_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.task_type, j.payload, j.attempts, j.max_attempts, j.priority,
          date_part('epoch', j.started_at) AS started_epoch;

-- name: finish
-- Record finished attempts in one statement: the job rows and their ledger rows. Only rows still leased by
-- this worker for this attempt are touched (a job whose lease was recovered is left alone); the ids of the
-- others, the refused attempts, are returned.
-- $1 worker id, $2 the attempts (job_queue_finished[], migration 006: id, attempt, new status, ledger outcome,
-- result as JSON text, error, next run_at for retries, finished_epoch, duration_ms). The finish time is Unix
-- epoch seconds: a float is encoded in a fraction of a timestamp's time, and to_timestamp keeps the
-- microseconds. The attempt's start is the row's own started_at, which the claim set and nothing changes while
-- the lease is held. Not parallel arrays (the driver checks every element of every array, nine checks per attempt
-- where the record takes three) nor comma-joined text columns (cheaper to send, but PostgreSQL parses each id
-- from text: the work moves to the server; docs/performance.md, "Bulk enqueue and the finish's arguments").
--
-- The plan must stay linear in the batch whatever the statistics say. The lease test is a join clause
-- (`j.locked_by = d.worker_id`, the CTE kept opaque), not a filter: as `j.locked_by = $1` the planner estimated
-- it from statistics taken while no job ran (a value never seen: one row), scanned the table first and
-- compared every row it found with every row of the batch (quadratic; tests/test_queue.py). The ledger rows come
-- from the update's own RETURNING, so nothing joins the batch a second time. No status test: locked_by is set
-- exactly while a job runs (job_queue_lease_check), and a status test would let the planner drive this join
-- from a status index over every running job instead of the key.
WITH done AS MATERIALIZED (
    SELECT d.*, $1::text AS worker_id
    FROM unnest($2::job_queue_finished[]) AS d
),
upd AS (
    UPDATE job_queue AS j
    SET status = d.status,
        result = coalesce(d.result::jsonb, j.result),
        last_error = CASE WHEN d.status = 'succeeded' THEN NULL ELSE d.error END,
        run_at = coalesce(d.run_at, j.run_at),
        locked_by = NULL,
        locked_until = NULL,
        finished_at = CASE WHEN d.status IN ('succeeded', 'failed') THEN to_timestamp(d.finished_epoch) END,
        updated_at = now()
    FROM done AS d
    WHERE j.id = d.id AND j.locked_by = d.worker_id AND j.attempts = d.attempt
    RETURNING j.id, j.task_type, d.attempt, j.started_at, to_timestamp(d.finished_epoch) AS finished_at, d.outcome,
              d.error, d.duration_ms
),
ledger AS (
    INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, error, duration_ms)
    SELECT id, attempt, $1, started_at, finished_at, outcome, error, duration_ms
    FROM upd
)
-- The refused attempts only (lease no longer held: usually none), not a row per job for the client to decode.
-- A finished job of a type with a concurrency limit (migration 010) frees a slot: its type is notified once per
-- statement (evaluated once, an InitPlan), which wakes the replicas whose jobs wait for that slot
-- (tests/test_limits.py).
SELECT d.id FROM done AS d WHERE NOT EXISTS (SELECT FROM upd WHERE upd.id = d.id)
  AND (SELECT count(pg_notify('job_queue', l.task_type)) FROM job_queue_limits AS l
       WHERE l.task_type IN (SELECT upd.task_type FROM upd)) >= 0;

-- name: heartbeat
-- Extend the leases this worker still holds; returns the ids it holds. It never waits for a row lock, so it is
-- never part of a deadlock with the daemon's other statements (tests/test_lease_deadlock.py): a row another
-- statement holds right now (this daemon's finish writing it, an operator's cancel) is skipped, not renewed,
-- and reported held; the next beat renews it or finds it gone. locked_by is set only while a job runs
-- (job_queue_lease_check).
WITH mine AS MATERIALIZED (
    SELECT id FROM job_queue WHERE id = ANY ($1::uuid[]) AND locked_by = $2
),
held AS (
    SELECT id FROM job_queue WHERE id = ANY ($1::uuid[]) AND locked_by = $2
    FOR NO KEY UPDATE SKIP LOCKED
),
renewed AS (
    UPDATE job_queue
    SET locked_until = now() + make_interval(secs => $3)
    WHERE id = ANY (ARRAY(SELECT id FROM held)) AND locked_by = $2
    RETURNING id
)
SELECT id FROM renewed
UNION ALL
SELECT id FROM mine WHERE id <> ALL (ARRAY(SELECT id FROM held));

-- name: release
-- Hand jobs back at shutdown: pending at once, the interrupted attempt not counted against max_attempts.
-- $1 worker id, $2 ids, $3 attempts, $4 started, $5 reason. Planned to stay linear as finish is.
WITH done AS MATERIALIZED (
    SELECT d.*, $1::text AS worker_id
    FROM unnest($2::uuid[], $3::int[], $4::timestamptz[]) AS d (id, attempt, started_at)
),
upd AS (
    UPDATE job_queue AS j
    SET status = 'pending',
        attempts = greatest(j.attempts - 1, 0),
        run_at = now(),
        last_error = $5,
        locked_by = NULL,
        locked_until = NULL,
        updated_at = now()
    FROM done AS d
    WHERE j.id = d.id AND j.locked_by = d.worker_id AND j.attempts = d.attempt
    RETURNING j.id, d.attempt, d.started_at
)
INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, error, duration_ms)
SELECT id, attempt, $1, started_at, now(), 'interrupted', $5,
       greatest(0, (extract(epoch FROM now() - started_at) * 1000)::int)
FROM upd
RETURNING job_id;

-- name: cancel
-- Cancel pending or running jobs. A running job's worker sees its lease gone at the next heartbeat and stops, and
-- by its lease's end at the latest (self-fencing): run_at keeps that end, before which a retry does not make the
-- job due, so that a retried attempt never overlaps the cancelled one (tests/test_http_run_fencing.py).
WITH target AS (
    SELECT id, status AS old_status, locked_by, started_at, attempts
    FROM job_queue WHERE id = ANY ($1::uuid[]) AND status IN ('pending', 'running')
    ORDER BY id  -- locked in id order: overlapping cancels wait for each other, never in a cycle
    FOR UPDATE
),
upd AS (
    UPDATE job_queue AS j
    SET status = 'cancelled', locked_by = NULL, locked_until = NULL, finished_at = now(), updated_at = now(),
        last_error = coalesce($2, j.last_error),
        run_at = CASE WHEN t.old_status = 'running' THEN greatest(j.locked_until, now()) ELSE least(j.run_at, now()) END
    FROM target AS t WHERE j.id = t.id
    RETURNING j.id, t.old_status, t.locked_by, t.started_at, t.attempts
),
ledger AS (
    INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, error, duration_ms)
    SELECT u.id, u.attempts, u.locked_by, u.started_at, now(), 'cancelled', coalesce($2, 'cancelled'),
           greatest(0, (extract(epoch FROM now() - u.started_at) * 1000)::int)
    FROM upd AS u WHERE u.old_status = 'running' AND u.attempts >= 1
)
SELECT id FROM upd;

-- name: retry_now
-- Failed or cancelled jobs run again now (with at least one attempt left); a pending job waiting for its
-- backoff runs now. A job cancelled while running runs once the cancelled attempt's lease has ended (cancel).
UPDATE job_queue
SET status = 'pending',
    run_at = CASE WHEN status = 'cancelled' THEN greatest(run_at, now()) ELSE now() END,
    max_attempts = greatest(max_attempts, attempts + 1),
    finished_at = NULL,
    updated_at = now()
WHERE id = ANY ($1::uuid[]) AND status IN ('failed', 'cancelled', 'pending')
RETURNING id;

-- name: get_job
SELECT id, task_type, payload, status, priority, run_at, attempts, max_attempts, last_error, result, dedupe_key,
       locked_by, locked_until, created_at, updated_at, started_at, finished_at
FROM job_queue WHERE id = $1;

-- name: job_statuses
SELECT id, status FROM job_queue WHERE id = ANY ($1::uuid[]);

-- name: job_runs
SELECT attempt, worker_id, started_at, finished_at, outcome, error, duration_ms
FROM job_runs WHERE job_id = $1 ORDER BY attempt, started_at, id;


-- name: never_analyzed
-- True when job_queue has no planner statistics yet (a fresh database).
SELECT coalesce(last_analyze IS NULL AND last_autoanalyze IS NULL, true)
FROM pg_stat_user_tables WHERE relid = 'job_queue'::regclass;

-- name: analyze
-- Without statistics the planner sorts every due job for each claim instead of walking job_queue_claim_idx.
ANALYZE job_queue;
