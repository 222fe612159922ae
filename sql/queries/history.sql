-- Named queries of worker/history.py: the admin page's charts and the schedules' track record. The charts read
-- the per-minute rollup (job_runs_minutely) before rolled_until and the ledger only after it, so a chart's
-- cost does not grow with the ledger (docs/performance.md).

-- name: rollup
-- Roll up the ledger's closed minutes (finished before now() - $1 seconds) not rolled up yet, at most 8 days
-- back, and prune the rollup and the samples older than that. Recomputes whole minutes (idempotent); one
-- daemon at a time (the others skip: advisory lock). A completion written more than $1 seconds after it
-- finished (an outage) lands in the ledger after its minute was rolled up and is not in the charts.
WITH lock AS (
    SELECT pg_try_advisory_xact_lock(hashtext('worker.history.rollup')) AS got
),
bounds AS (
    SELECT greatest(coalesce((SELECT rolled_until FROM job_history_state), '-infinity'),
                    date_trunc('minute', now()) - interval '8 days') AS since,
           date_trunc('minute', now() - make_interval(secs => $1)) AS until
),
agg AS (
    SELECT date_trunc('minute', r.finished_at) AS minute, coalesce(j.task_type, '?') AS task_type, r.outcome,
           count(*)::int AS n
    FROM job_runs AS r LEFT JOIN job_queue AS j ON j.id = r.job_id
    WHERE (SELECT got FROM lock)
      AND r.finished_at >= (SELECT since FROM bounds) AND r.finished_at < (SELECT until FROM bounds)
    GROUP BY 1, 2, 3
),
ins AS (
    INSERT INTO job_runs_minutely (minute, task_type, outcome, n)
    SELECT minute, task_type, outcome, n FROM agg
    ON CONFLICT (minute, task_type, outcome) DO UPDATE SET n = EXCLUDED.n
    RETURNING 1
),
mark AS (
    INSERT INTO job_history_state (id, rolled_until)
    SELECT true, until FROM bounds WHERE (SELECT got FROM lock) AND until > since
    ON CONFLICT (id) DO UPDATE SET rolled_until = greatest(job_history_state.rolled_until, EXCLUDED.rolled_until)
    RETURNING 1
),
prune_runs AS (
    DELETE FROM job_runs_minutely WHERE (SELECT got FROM lock) AND minute < now() - interval '8 days'
    RETURNING 1
),
prune_samples AS (
    DELETE FROM job_queue_samples WHERE (SELECT got FROM lock) AND minute < now() - interval '8 days'
    RETURNING 1
)
SELECT (SELECT got FROM lock) AS got, (SELECT count(*) FROM ins) AS minutes,
       (SELECT count(*) FROM mark) AS marked,
       (SELECT count(*) FROM prune_runs) + (SELECT count(*) FROM prune_samples) AS pruned;

-- name: sample_queue
-- This minute's due pending jobs per task type and for all ('*'), once a minute whatever the number of
-- daemons (the first one this minute writes it; the check runs before the queue is read).
WITH due AS (
    SELECT task_type, count(*)::int AS n, extract(epoch FROM now() - min(run_at))::float8 AS age_s
    FROM job_queue
    WHERE status = 'pending' AND run_at <= now()
      AND NOT EXISTS (SELECT FROM job_queue_samples
                      WHERE minute = date_trunc('minute', now()) AND task_type = '*')
    GROUP BY task_type
)
INSERT INTO job_queue_samples (minute, task_type, due_pending, oldest_due_age_s)
SELECT date_trunc('minute', now()), task_type, n, greatest(age_s, 0) FROM due
UNION ALL
SELECT date_trunc('minute', now()), '*', coalesce(sum(n), 0)::int, greatest(coalesce(max(age_s), 0), 0) FROM due
WHERE NOT EXISTS (SELECT FROM job_queue_samples WHERE minute = date_trunc('minute', now()) AND task_type = '*')
ON CONFLICT (minute, task_type) DO NOTHING;

-- name: rolled_until
-- Where the rollup stands (null: nothing rolled up yet).
SELECT rolled_until FROM job_history_state;

-- name: throughput
-- Finished attempts per bucket and outcome since $1, in buckets of $2 seconds aligned on $1, for task type
-- $3 (null = all): the rollup's minutes before $4 (rolled_until, read first and passed as a value so that the
-- planner sees how few ledger rows lie after it), the ledger's rows after it.
WITH picked AS (
    SELECT m.minute AS t, m.outcome, m.n
    FROM job_runs_minutely AS m
    WHERE m.minute >= $1 AND m.minute < $4 AND ($3::text IS NULL OR m.task_type = $3)
    UNION ALL
    SELECT r.finished_at, r.outcome, 1
    FROM job_runs AS r
    WHERE r.finished_at >= greatest($1, $4)
      AND ($3::text IS NULL OR EXISTS (SELECT FROM job_queue AS j WHERE j.id = r.job_id AND j.task_type = $3))
)
SELECT date_bin(make_interval(secs => $2), t, $1) AS bucket, outcome, sum(n)::bigint AS n
FROM picked
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: queue_depth
-- Due pending jobs (the bucket's largest sample) and the oldest due age (its largest) since $1 in buckets
-- of $2 seconds, for task type $3 (null = all). A minute sampled with nothing due of that type counts 0.
SELECT date_bin(make_interval(secs => $2), a.minute, $1) AS bucket,
       max(CASE WHEN $3::text IS NULL THEN a.due_pending ELSE coalesce(t.due_pending, 0) END) AS due_pending,
       max(CASE WHEN $3::text IS NULL THEN a.oldest_due_age_s ELSE coalesce(t.oldest_due_age_s, 0) END)
           AS oldest_due_age_s
FROM job_queue_samples AS a
LEFT JOIN job_queue_samples AS t
    ON $3::text IS NOT NULL AND t.minute = a.minute AND t.task_type = $3
WHERE a.task_type = '*' AND a.minute >= $1
GROUP BY 1
ORDER BY 1;

-- name: schedule_jobs
-- The jobs of a schedule's slots by dedupe key (schedule:<name>:<slot>; job_queue_schedule_slot_idx).
SELECT dedupe_key, id, status, attempts, created_at, started_at, finished_at, last_error,
       extract(epoch FROM finished_at - started_at)::float8 AS duration_s
FROM job_queue
WHERE dedupe_key LIKE 'schedule:%' AND dedupe_key = ANY ($1::text[]);
