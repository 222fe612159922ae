-- Named queries of worker/metrics.py: what /metrics computes from the database at scrape time.

-- name: jobs_by_status
SELECT task_type, status, count(*) AS n FROM job_queue GROUP BY task_type, status;

-- name: oldest_due_pending_age
-- Seconds since the oldest due pending job became due (0 when there is none).
SELECT coalesce(extract(epoch FROM now() - min(run_at)), 0)::float8
FROM job_queue WHERE status = 'pending' AND run_at <= now();

-- name: db_now
SELECT now();

-- name: due_pending_by_task_type
-- Due pending jobs per task type (paused types included: they are waiting too): the worker_jobs_due_pending
-- gauge, and KEDA's scaling metric (deploy/k8s/keda/scaledobject.yaml embeds this text verbatim, one trigger per
-- task type; tests/test_deploy_manifests.py guards that and that it counts what the admin page counts).
SELECT task_type, count(*) AS n FROM job_queue WHERE status = 'pending' AND run_at <= now() GROUP BY task_type;
