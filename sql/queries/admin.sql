-- Named queries of the admin page (worker/http/admin/data.py). Actions go through worker/queue.py and
-- worker/operations.py; these are the admin page's read-only views.

-- name: list_jobs
-- Keyset paging, newest first, over job_queue_created_idx (created_at DESC, id DESC): a page costs the rows it
-- reads, whatever its depth. $1 status, $2 task type, $3 created at or after, $4 created before,
-- $5 ILIKE pattern on last_error, $6/$7 continue after this (created_at, id), $8 limit.
SELECT id, task_type, status, priority, run_at, attempts, max_attempts, left(last_error, 500) AS last_error,
       dedupe_key, locked_by, created_at, finished_at
FROM job_queue
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR task_type = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::timestamptz IS NULL OR created_at < $4)
  AND ($5::text IS NULL OR last_error ILIKE $5)
  AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $8;

-- name: last_hour
-- Attempts finished in the last hour by task type and outcome (the ledger, over job_runs_finished_idx).
SELECT j.task_type, r.outcome, count(*) AS n
FROM job_runs AS r JOIN job_queue AS j ON j.id = r.job_id
WHERE r.finished_at > now() - interval '1 hour'
GROUP BY j.task_type, r.outcome
ORDER BY j.task_type, r.outcome;
