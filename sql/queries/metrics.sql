-- Named queries of worker/metrics.py: what /metrics computes from the database at scrape time.

-- name: jobs_by_status
SELECT task_type, status, count(*) AS n FROM job_queue GROUP BY task_type, status;

-- name: oldest_due_pending_age
-- Seconds since the oldest due pending job became due (0 when there is none).
SELECT coalesce(extract(epoch FROM now() - min(run_at)), 0)::float8
FROM job_queue WHERE status = 'pending' AND run_at <= now();

-- name: db_now
SELECT now();
