-- Seeds a migrated scratch database for docs/performance.md ("The operator's view"): 100,000 jobs (2,000 due
-- pending, the rest finished) over four task types, each id carrying its created_at as an enqueue's does, and
-- 1,000,000 ledger rows spread over the last 7 days.
-- psql -v ON_ERROR_STOP=1 -d SCRATCH -f bench/operator_view_seed.sql
INSERT INTO job_queue (id, task_type, status, run_at, attempts, created_at, started_at, finished_at)
SELECT job_queue_uuidv7_at(now() - make_interval(secs => i * 6)), (ARRAY['noop', 'game_platform_sync', 'cleanup', 'email'])[1 + i % 4],
       CASE WHEN i <= 2000 THEN 'pending' ELSE 'succeeded' END,
       now() - make_interval(secs => i * 6), CASE WHEN i <= 2000 THEN 0 ELSE 1 END,
       now() - make_interval(secs => i * 6), now() - make_interval(secs => i * 6),
       CASE WHEN i <= 2000 THEN NULL ELSE now() - make_interval(secs => i * 6) END
FROM generate_series(1, 100000) AS i;

INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, duration_ms)
SELECT j.id, 1 + g % 3, 'bench-' || (g % 4), now() - make_interval(secs => g * 0.6048) - interval '1 second',
       now() - make_interval(secs => g * 0.6048),
       (ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'retry',
              'failed', 'abandoned'])[1 + g % 10], 1000
FROM generate_series(1, 1000000) AS g
JOIN (SELECT id, row_number() OVER () - 1 AS k FROM job_queue) AS j ON j.k = g % 100000;
ANALYZE job_queue;
ANALYZE job_runs;
