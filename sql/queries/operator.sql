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
-- Keyset paging, newest first. $1 status, $2 task type, $3 created since, $4 limit, $5 continue after this id.
SELECT id, task_type, status, priority, run_at, attempts, max_attempts, last_error, dedupe_key, locked_by,
       created_at, finished_at
FROM job_queue
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR task_type = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($5::uuid IS NULL OR (created_at, id) < (SELECT a.created_at, a.id FROM job_queue AS a WHERE a.id = $5))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: job_exists
SELECT EXISTS (SELECT 1 FROM job_queue WHERE id = $1);

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
-- Finished jobs matching a filter, oldest first, at most $4. $1 status (null = any finished), $2 task type,
-- $3 finished before.
SELECT id FROM job_queue
WHERE status IN ('succeeded', 'failed', 'cancelled')
  AND ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR task_type = $2)
  AND finished_at < $3
ORDER BY created_at, id
LIMIT $4;

-- name: cleanup_batch
-- Delete one bounded batch of expired finished jobs and their ledger rows, the oldest first. $1 succeeded
-- retention seconds, $2 failed/cancelled retention seconds, $3 batch size, ($4 created_at, $5 id) the key after
-- which this run's previous batch stopped (year 1 and the nil uuid for the first batch); returns that key
-- for the next batch (NULL when nothing was deleted).
-- The key is a condition of job_queue_created_idx's scan: it keeps each batch from re-reading the dead entries
-- of the run's earlier batches and the rows it kept (pending, or within the longer retention), so a run reads
-- the old end once, not once per batch (tests/test_cleanup.py). No bound on created_at: a job's finished_at
-- alone decides (a row may carry any created_at; tests/test_scheduler.py). FOR UPDATE SKIP LOCKED: a job an
-- operator retries meanwhile is not deleted, and two cleanups never wait for each other.
WITH doomed AS (
    SELECT id, created_at FROM job_queue
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at < now() - make_interval(
            secs => CASE WHEN status = 'succeeded' THEN $1::float8 ELSE $2::float8 END)
      AND (created_at, id) > ($4::timestamptz, $5::uuid)
    ORDER BY created_at, id  -- the old end of job_queue_created_idx
    LIMIT $3
    FOR UPDATE SKIP LOCKED
),
runs AS (
    DELETE FROM job_runs AS r USING doomed AS d WHERE r.job_id = d.id RETURNING r.id
),
jobs AS (
    DELETE FROM job_queue AS j USING doomed AS d WHERE j.id = d.id RETURNING j.status
),
last AS (
    SELECT created_at, id FROM doomed ORDER BY created_at DESC, id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM jobs) AS jobs,
       (SELECT count(*) FROM jobs WHERE status = 'succeeded') AS succeeded,
       (SELECT count(*) FROM runs) AS runs,
       (SELECT created_at FROM last) AS last_created_at,
       (SELECT id FROM last) AS last_id;

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
