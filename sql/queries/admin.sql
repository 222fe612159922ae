-- Named queries of the admin page (worker/http/admin/data.py). Actions go through worker/queue.py and
-- worker/operations.py, and so does the job list (operator.sql list_jobs); these are the admin page's
-- read-only views.

-- name: last_hour
-- Attempts finished in the last hour by task type and outcome (the ledger, over job_runs_finished_idx).
SELECT j.task_type, r.outcome, count(*) AS n
FROM job_runs AS r JOIN job_queue AS j ON j.id = r.job_id
WHERE r.finished_at > now() - interval '1 hour'
GROUP BY j.task_type, r.outcome
ORDER BY j.task_type, r.outcome;
