-- The queue's statistics, one definition each for every reader: /metrics (worker/metrics.py), the admin page
-- (worker/http/admin/), KEDA (deploy/k8s/keda/) and their tests. `worker doctor`'s oldest_pending check
-- (sql/queries/operator.sql) leaves paused task types out on purpose: it asks what the daemons should be running.

-- name: jobs_by_status
-- Jobs by task type and status.
SELECT task_type, status, count(*) AS n FROM job_queue GROUP BY task_type, status ORDER BY task_type, status;

-- name: oldest_due_pending
-- Age in seconds of the oldest due pending job (NULL when there is none; paused task types included: they are
-- waiting too), and how many due pending jobs there are. A skip scan of job_queue_claim_idx (priority DESC,
-- run_at, id): the recursion finds each priority that has pending jobs, one index probe each, and the lateral
-- reads that priority's due entries only (run_at <= now() bounds the range), so jobs scheduled for later cost
-- nothing (tests/test_index_plans.py). worker.queue.queue_depth (the trigger's answer) reads its count.
WITH RECURSIVE priorities (p) AS (
    (SELECT q.priority FROM job_queue AS q WHERE q.status = 'pending' ORDER BY q.priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT q.priority FROM job_queue AS q WHERE q.status = 'pending' AND q.priority < s.p
            ORDER BY q.priority DESC LIMIT 1)
    FROM priorities AS s WHERE s.p IS NOT NULL
)
SELECT extract(epoch FROM now() - min(d.oldest))::float8 AS age_s, coalesce(sum(d.n), 0)::bigint AS n
FROM priorities AS s
CROSS JOIN LATERAL (
    SELECT min(q.run_at) AS oldest, count(*) AS n
    FROM job_queue AS q WHERE q.status = 'pending' AND q.priority = s.p AND q.run_at <= now()
) AS d
WHERE s.p IS NOT NULL;

-- name: oldest_due_wait
-- How long the oldest due pending job has waited, in seconds (NULL when none is due): cleanup's signal that
-- the queue is behind (worker/builtin/cleanup.py). oldest_due_pending's skip scan of job_queue_claim_idx
-- without its count: per priority with pending jobs, the first due entry only (tests/test_index_plans.py).
WITH RECURSIVE priorities (p) AS (
    (SELECT q.priority FROM job_queue AS q WHERE q.status = 'pending' ORDER BY q.priority DESC LIMIT 1)
    UNION ALL
    SELECT (SELECT q.priority FROM job_queue AS q WHERE q.status = 'pending' AND q.priority < s.p
            ORDER BY q.priority DESC LIMIT 1)
    FROM priorities AS s WHERE s.p IS NOT NULL
)
SELECT extract(epoch FROM now() - min(d.oldest))::float8 AS wait_s
FROM priorities AS s
CROSS JOIN LATERAL (
    SELECT min(q.run_at) AS oldest
    FROM job_queue AS q WHERE q.status = 'pending' AND q.priority = s.p AND q.run_at <= now()
) AS d
WHERE s.p IS NOT NULL;

-- name: due_pending_by_task_type
-- Due pending jobs per task type (paused types included): the worker_jobs_due_pending gauge, and KEDA's scaling
-- metric (deploy/k8s/keda/scaledobject.yaml embeds this text verbatim, one trigger per task type;
-- tests/test_deploy_manifests.py guards that and that it counts what the admin page counts).
SELECT task_type, count(*) AS n FROM job_queue WHERE status = 'pending' AND run_at <= now() GROUP BY task_type;

-- name: db_now
SELECT now();
