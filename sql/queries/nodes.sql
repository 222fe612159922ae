-- Named queries of worker/nodes.py: live workers (worker_nodes), read by the admin page, `worker workers`,
-- /metrics and `worker doctor`. A row is live while last_seen is within $gone lease periods of now.

-- name: beat
-- The daemon's registration, once per heartbeat interval: upsert this worker's row and delete the rows of
-- workers gone for $10 lease periods (their own lease_s). One round trip.
-- $1 worker_id, $2 host, $3 pid, $4 version, $5 task_types, $6 concurrency, $7 lease_s, $8 running,
-- $9 started_at, $10 lease periods after which a row is gone.
WITH gone AS (
    DELETE FROM worker_nodes
    WHERE worker_id <> $1 AND last_seen < now() - make_interval(secs => lease_s * $10)
    RETURNING worker_id
)
INSERT INTO worker_nodes AS w
    (worker_id, host, pid, version, task_types, concurrency, lease_s, running, started_at, last_seen)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
ON CONFLICT (worker_id) DO UPDATE
SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version, task_types = EXCLUDED.task_types,
    concurrency = EXCLUDED.concurrency, lease_s = EXCLUDED.lease_s, running = EXCLUDED.running,
    started_at = EXCLUDED.started_at, last_seen = now()
RETURNING (SELECT count(*) FROM gone) AS removed;

-- name: leave
-- A daemon that stops deletes its own row ($1 worker_id, $2 its started_at: a newer process under the same
-- id keeps its row).
DELETE FROM worker_nodes WHERE worker_id = $1 AND started_at = $2;

-- name: live
-- Live workers, with the jobs each holds now (from the queue: running jobs carry locked_by).
-- $1 lease periods after which a row is gone.
SELECT w.worker_id, w.host, w.pid, w.version, w.task_types, w.concurrency, w.lease_s, w.running,
       w.started_at, w.last_seen, extract(epoch FROM now() - w.last_seen)::float8 AS seen_s_ago,
       (w.last_seen >= now() - make_interval(secs => w.lease_s)) AS fresh,
       coalesce(r.jobs, '{}') AS running_jobs, coalesce(r.n, 0) AS running_in_queue
FROM worker_nodes AS w
LEFT JOIN LATERAL (
    SELECT count(*)::int AS n, (array_agg(j.id ORDER BY j.started_at))[1:10] AS jobs
    FROM job_queue AS j
    WHERE j.status = 'running' AND j.locked_by = w.worker_id
) AS r ON true
WHERE w.last_seen >= now() - make_interval(secs => w.lease_s * $1)
ORDER BY w.worker_id;

-- name: unserved
-- Task types with pending jobs ($2 true: of any age; false: due ones) and no live worker that handles them ($1
-- lease periods after which a row is gone). Paused task types are not flagged: nothing would claim them anyway.
SELECT d.task_type, d.due, d.pending, d.oldest_s
FROM (
    SELECT task_type, count(*) FILTER (WHERE run_at <= now()) AS due, count(*) AS pending,
           extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8 AS oldest_s
    FROM job_queue WHERE status = 'pending' AND ($2 OR run_at <= now())
    GROUP BY task_type
) AS d
WHERE NOT EXISTS (
        SELECT FROM worker_nodes AS w
        WHERE d.task_type = ANY (w.task_types) AND w.last_seen >= now() - make_interval(secs => w.lease_s * $1))
  AND NOT EXISTS (SELECT FROM job_queue_pause AS p WHERE p.task_type IN (d.task_type, '*'))
ORDER BY d.task_type;
