-- Named queries of worker/progress.py: a running job's progress on its row. Parameters are positional ($n).

-- name: set_progress
-- Write one progress report, only while this worker still holds the lease of this attempt (locked_by is set
-- exactly while a job runs: job_queue_lease_check), so a late write never lands on a job that finished, was
-- recovered, or runs again as a later attempt (tests/test_progress.py). Returns the id when written.
-- $1 job id, $2 worker id, $3 attempt, $4 the progress (jsonb).
UPDATE job_queue
SET progress = $4::jsonb
WHERE id = $1 AND locked_by = $2 AND attempts = $3
RETURNING id;

-- name: progress_of
-- The progress of these jobs (null when none was reported).
SELECT id, progress FROM job_queue WHERE id = ANY ($1::uuid[]);

-- name: running_progress
-- Per task type, the running jobs that reported progress and their done / total summed (for /metrics).
SELECT task_type, count(*)::int AS jobs,
       sum((progress->>'done')::bigint)::float8 AS done,
       sum((progress->>'total')::bigint)::float8 AS total
FROM job_queue
WHERE status = 'running' AND progress IS NOT NULL
  AND jsonb_typeof(progress->'done') = 'number'
GROUP BY task_type
ORDER BY task_type;
