-- Named queries of worker/operations.py, worker/runtime/scheduler.py and worker/cli/doctor.py.

-- name: pause
-- $1 task type or '*', $2 who, $3 reason. Pausing twice keeps the first pause time.
INSERT INTO job_queue_pause (task_type, paused_by, reason) VALUES ($1, $2, $3)
ON CONFLICT (task_type) DO UPDATE SET reason = coalesce(EXCLUDED.reason, job_queue_pause.reason)
RETURNING task_type, paused_at, paused_by, reason;

-- name: resume
-- Remove the flag and wake the daemons (an empty payload wakes every task type).
WITH gone AS (
    DELETE FROM job_queue_pause WHERE task_type = $1 RETURNING task_type
)
SELECT task_type, pg_notify('job_queue', CASE WHEN task_type = '*' THEN '' ELSE task_type END) AS notified
FROM gone;

-- name: paused
SELECT task_type, paused_at, paused_by, reason FROM job_queue_pause ORDER BY task_type;

-- name: list_jobs
-- Keyset paging, newest first by (created_at in milliseconds, id): migration 018's job_queue_list, which reads
-- about a page of job_queue_pkey and of job_queue_untimed_created_idx at any depth. $1 status, $2 task type,
-- $3 created at or after, $4 created before (both to the millisecond), $5 ILIKE pattern on last_error, $6/$7
-- continue after this (created_at in milliseconds, id), $8 limit (tests/test_listing_order.py).
SELECT id, task_type, status, priority, run_at, attempts, max_attempts, last_error, dedupe_key, locked_by,
       created_at, finished_at, listed_ms
FROM job_queue_list($1, $2, $3, $4, $5, $6, $7, $8);

-- name: listed_ms
-- Where a job stands in the listings' order: its created_at in milliseconds (NULL: no such job).
SELECT job_queue_millis(created_at) FROM job_queue WHERE id = $1;

-- name: retry_filtered
-- Bulk replay: failed or cancelled jobs matching the filter back to pending now, at most $4 of them. A job
-- whose dedupe key is held by a live job is skipped, and of several sharing a key only the newest is replayed.
-- $1 status, $2 task type (null = any), $3 finished since (null = any), $4 limit.
WITH candidates AS (
    SELECT DISTINCT ON (coalesce(j.dedupe_key, j.id::text)) j.id
    FROM job_queue AS j
    WHERE j.status = $1
      AND ($2::text IS NULL OR j.task_type = $2)
      AND ($3::timestamptz IS NULL OR coalesce(j.finished_at, j.updated_at) >= $3)
      AND (j.dedupe_key IS NULL OR NOT EXISTS (
            SELECT 1 FROM job_queue AS o
            WHERE o.dedupe_key = j.dedupe_key AND o.status IN ('pending', 'running')))
    ORDER BY coalesce(j.dedupe_key, j.id::text), j.created_at DESC
),
picked AS (
    SELECT j.id FROM job_queue AS j JOIN candidates AS c ON c.id = j.id
    WHERE j.status = $1
    ORDER BY j.created_at
    LIMIT $4
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE job_queue AS j
SET status = 'pending',
    run_at = CASE WHEN j.status = 'cancelled' THEN greatest(j.run_at, now()) ELSE now() END,  -- see queue.sql cancel
    max_attempts = greatest(j.max_attempts, j.attempts + 1),
    finished_at = NULL,
    updated_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.id;

-- name: archive_ids
-- Move these finished jobs and their attempt history to the archive, in one statement.
WITH chosen AS (
    SELECT id FROM job_queue
    WHERE id = ANY ($1::uuid[]) AND status IN ('succeeded', 'failed', 'cancelled')
    FOR UPDATE
),
jobs AS (
    INSERT INTO job_queue_archive (id, task_type, payload, status, priority, run_at, attempts, max_attempts,
                                   last_error, result, dedupe_key, created_at, updated_at, started_at,
                                   finished_at)
    SELECT j.id, j.task_type, j.payload, j.status, j.priority, j.run_at, j.attempts, j.max_attempts,
           j.last_error, j.result, j.dedupe_key, j.created_at, j.updated_at, j.started_at, j.finished_at
    FROM job_queue AS j JOIN chosen AS c ON c.id = j.id
    RETURNING id
),
runs AS (
    INSERT INTO job_runs_archive (id, job_id, attempt, worker_id, started_at, finished_at, outcome, error,
                                  duration_ms)
    SELECT r.id, r.job_id, r.attempt, r.worker_id, r.started_at, r.finished_at, r.outcome, r.error,
           r.duration_ms
    FROM job_runs AS r JOIN chosen AS c ON c.id = r.job_id
    RETURNING id
),
ledger_gone AS (
    DELETE FROM job_runs AS r USING chosen AS c WHERE r.job_id = c.id
)
DELETE FROM job_queue AS j
USING chosen AS c
WHERE j.id = c.id
RETURNING j.id, (SELECT count(*) FROM runs) AS runs;

-- name: archive_candidates
-- Finished jobs matching a filter, at most $4, in id order over job_queue_pkey: the oldest first of those
-- whose id carries their time (migration 018). $1 status (null = any finished), $2 task type, $3 finished before.
SELECT id FROM job_queue
WHERE status IN ('succeeded', 'failed', 'cancelled')
  AND ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR task_type = $2)
  AND finished_at < $3
ORDER BY id
LIMIT $4;

-- name: cleanup_batch
-- Delete one bounded batch of expired finished jobs and their ledger rows, in id order. $1 succeeded retention
-- seconds, $2 failed/cancelled retention seconds, $3 batch size, $4 the id after which this run's previous batch
-- stopped (the nil uuid for the first batch); returns that id for the next batch (NULL when nothing was deleted).
-- The batch is migration 018's job_queue_expired: a walk of job_queue_pkey from $4, the oldest first of the jobs
-- whose id carries their time, the others wherever their ids sort; a run reads the index once, not once per
-- batch (tests/test_cleanup.py). A job's finished_at alone decides (a row may carry any created_at or id).
WITH doomed AS (
    SELECT e.id FROM job_queue_expired($1::float8, $2::float8, $3::int, $4::uuid) AS e (id)
),
-- The deletes find their rows by key from an array, not by a join the planner might make a scan of the table.
runs AS (
    DELETE FROM job_runs AS r WHERE r.job_id = ANY (ARRAY(SELECT id FROM doomed)) RETURNING r.id
),
jobs AS (
    DELETE FROM job_queue AS j WHERE j.id = ANY (ARRAY(SELECT id FROM doomed)) RETURNING j.status
)
SELECT (SELECT count(*) FROM jobs) AS jobs,
       (SELECT count(*) FROM jobs WHERE status = 'succeeded') AS succeeded,
       (SELECT count(*) FROM runs) AS runs,
       (SELECT id FROM doomed ORDER BY id DESC LIMIT 1) AS last_id;

-- name: schedule_claim_slot
-- Advance a schedule to $4 only forwards; returns a row only to the one caller that advanced it.
-- $1 name, $2 cron, $3 task type, $4 slot.
INSERT INTO job_queue_schedule AS s (name, cron, task_type, last_slot) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
    SET last_slot = EXCLUDED.last_slot, cron = EXCLUDED.cron, task_type = EXCLUDED.task_type,
        updated_at = now()
    WHERE s.last_slot < EXCLUDED.last_slot
RETURNING name, (xmax = 0) AS first_seen;

-- name: schedule_set_job
UPDATE job_queue_schedule SET last_job_id = $2, last_enqueued_at = now(), updated_at = now() WHERE name = $1;

-- name: schedules
SELECT s.name, s.cron, s.task_type, s.last_slot, s.last_job_id, s.last_enqueued_at, j.status AS last_job_status
FROM job_queue_schedule AS s LEFT JOIN job_queue AS j ON j.id = s.last_job_id
ORDER BY s.name;

-- name: expired_leases
SELECT count(*) AS n, extract(epoch FROM now() - min(locked_until)) AS oldest_s
FROM job_queue WHERE status = 'running' AND locked_until < now();

-- name: oldest_due_pending
-- Age of the oldest due pending job of a task type that is not paused.
SELECT extract(epoch FROM now() - min(run_at)) AS age_s, count(*) AS n
FROM job_queue AS j
WHERE j.status = 'pending' AND j.run_at <= now()
  AND NOT EXISTS (SELECT 1 FROM job_queue_pause AS p WHERE p.task_type IN (j.task_type, '*'));

-- name: failures_last_hour
SELECT j.task_type,
       count(*) FILTER (WHERE r.outcome = 'failed') AS failed,
       count(*) FILTER (WHERE r.outcome IN ('retry', 'abandoned')) AS retried
FROM job_runs AS r JOIN job_queue AS j ON j.id = r.job_id
WHERE r.finished_at > now() - interval '1 hour' AND r.outcome IN ('failed', 'retry', 'abandoned')
GROUP BY j.task_type
ORDER BY j.task_type;

-- name: relation_exists
SELECT to_regclass($1) IS NOT NULL;

-- name: cron_jobs
-- pg_cron: each job with its latest run.
SELECT j.jobid, j.jobname, j.schedule, j.active, d.status, d.return_message, d.start_time
FROM cron.job AS j
LEFT JOIN LATERAL (
    SELECT status, return_message, start_time FROM cron.job_run_details AS r
    WHERE r.jobid = j.jobid ORDER BY r.start_time DESC NULLS LAST LIMIT 1
) AS d ON true
ORDER BY j.jobid;

-- name: net_queue
SELECT count(*) FROM net.http_request_queue;

-- name: net_errors
-- pg_net responses of the last hour that failed (transport error, timeout or a 5xx/4xx status).
SELECT count(*) AS errors, max(error_msg) AS sample
FROM net._http_response
WHERE created > now() - interval '1 hour'
  AND (error_msg IS NOT NULL OR timed_out OR status_code >= 400);

-- name: server_version
SELECT current_setting('server_version');
