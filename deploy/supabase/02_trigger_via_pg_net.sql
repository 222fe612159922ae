-- deploy/supabase/02_trigger_via_pg_net.sql  (compatibility; prefer 01_cron_enqueue.sql)
-- The seed's pattern kept working: pg_cron calls the worker's HTTP port through pg_net. The endpoint and the
-- shared secret live in Supabase Vault, never in this file:
--   select vault.create_secret('https://worker.example.com/trigger', 'job_queue_worker_endpoint');
--   select vault.create_secret('<the value of JOB_QUEUE_RUNNER_SECRET>', 'job_queue_runner_secret');
-- The body is minimal (a task type and a per-hour dedupe key: /trigger enqueues it, then wakes the daemon),
-- and the timeout short: small requests keep pg_net's queue and memory small.
-- Requires: pg_cron, pg_net, Vault, and the worker's HTTP port reachable from the database.
-- Undo: deploy/supabase/99_rollback.sql.

-- Enable the extensions first (Dashboard -> Database -> Extensions: pg_net; Vault is on by default).
DO $guard$
BEGIN
    IF to_regprocedure('net.http_post(text,jsonb,jsonb,jsonb,integer)') IS NULL THEN
        RAISE EXCEPTION 'pg_net is not enabled: enable the pg_net extension first';
    END IF;
    IF to_regclass('vault.decrypted_secrets') IS NULL THEN
        RAISE EXCEPTION 'Vault is not available: vault.decrypted_secrets is missing';
    END IF;
END
$guard$;

SELECT cron.schedule(
    'job_queue_trigger_worker',
    '0 * * * *',
    $cron$
    SELECT net.http_post(
        url := (SELECT decrypted_secret FROM vault.decrypted_secrets
                WHERE name = 'job_queue_worker_endpoint'),
        body := jsonb_build_object(
            'task_type', 'game_platform_sync',
            'dedupe_key', 'cron:game_platform_sync:'
                || to_char(date_trunc('hour', now() AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:MI"Z"')
        ),
        headers := jsonb_build_object(
            'Content-Type', 'application/json',
            'Authorization', 'Bearer ' || (SELECT decrypted_secret FROM vault.decrypted_secrets
                                           WHERE name = 'job_queue_runner_secret')
        ),
        timeout_milliseconds := 5000
    )
    $cron$
);
