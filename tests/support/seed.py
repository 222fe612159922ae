"""One row in every table the migrations create, for the security tests (RLS and grants), which check that
each table is seeded: a new table without a row here fails them."""

SEED_EVERY_TABLE = """
WITH j AS (INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id)
INSERT INTO job_runs (job_id, attempt, worker_id, started_at, finished_at, outcome, duration_ms)
SELECT id, 1, 'w', now(), now(), 'succeeded', 1 FROM j;
INSERT INTO job_queue_pause (task_type) VALUES ('cleanup');
INSERT INTO job_queue_limits (task_type, max_running) VALUES ('limited', 2);
INSERT INTO job_queue_rate_buckets (bucket, tokens, refilled_at) VALUES ('seeded', 1, now());
INSERT INTO job_queue_schedule (name, cron, task_type, last_slot) VALUES ('seeded', '0 * * * *', 'noop', now());
INSERT INTO job_queue_archive (id, task_type, payload, status, priority, run_at, attempts, max_attempts,
                               created_at, updated_at, finished_at)
    VALUES (gen_random_uuid(), 'noop', '{}', 'succeeded', 0, now(), 1, 5, now(), now(), now());
INSERT INTO job_runs_archive (id, job_id, attempt, worker_id, started_at, finished_at, outcome, duration_ms)
    SELECT 1, id, 1, 'w', now(), now(), 'succeeded', 1 FROM job_queue_archive;
WITH c AS (INSERT INTO competitors (coach_id, name, platform_player_id)
           VALUES (gen_random_uuid(), 'C', 'p00001') RETURNING id)
INSERT INTO competitor_game_stats (competitor_id, games_played, wins, losses, draws, rating, platform_updated_at,
                                   fetched_at)
SELECT id, 1, 1, 0, 0, 1000, now(), now() FROM c;
INSERT INTO worker_nodes (worker_id, host, pid, version, task_types, concurrency, lease_s, started_at)
    VALUES ('w', 'h', 1, '0', '{noop}', 1, 30, now());
INSERT INTO job_runs_minutely (minute, task_type, outcome, n)
    VALUES (date_trunc('minute', now()), 'noop', 'succeeded', 1);
INSERT INTO job_queue_samples (minute, task_type, due_pending, oldest_due_age_s)
    VALUES (date_trunc('minute', now()), '*', 0, 0);
INSERT INTO job_history_state (rolled_until) VALUES (now());
"""
