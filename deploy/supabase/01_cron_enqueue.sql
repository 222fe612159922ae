-- deploy/supabase/01_cron_enqueue.sql
-- pg_cron enqueues the recurring jobs by a plain INSERT into job_queue: no HTTP, no pg_net (so the seed's
-- `net.http_post` "Out of memory" cannot happen). The INSERT fires the NOTIFY trigger; the daemon wakes up.
--
-- Use this INSTEAD of the daemon's built-in schedules: set WORKER_SCHEDULES_ENABLED=false on the workers.
-- Requires: `worker migrate` applied (job_queue exists) and the pg_cron extension
-- (Supabase: Database -> Extensions -> pg_cron, or the CREATE EXTENSION below).
-- Safe to run again: cron.schedule() with an existing job name updates that job.
-- Undo: deploy/supabase/99_rollback.sql.

CREATE EXTENSION IF NOT EXISTS pg_cron;

-- Hourly game-platform sync at minute 0. One job per hour slot: the dedupe key names the slot (UTC), so a
-- second run in the same hour (a retried cron run, a manual run) adds nothing, even after the first finished.
SELECT cron.schedule(
    'job_queue_game_platform_sync',
    '0 * * * *',
    $cron$
    INSERT INTO public.job_queue (task_type, payload, dedupe_key)
    SELECT 'game_platform_sync', '{}'::jsonb, slot.key
    FROM (SELECT 'cron:game_platform_sync:' || to_char(date_trunc('hour', now() AT TIME ZONE 'UTC'),
                                                       'YYYY-MM-DD"T"HH24:MI"Z"') AS key) AS slot
    WHERE NOT EXISTS (
        SELECT 1 FROM public.job_queue q
        WHERE q.task_type = 'game_platform_sync' AND q.dedupe_key = slot.key
    )
    ON CONFLICT DO NOTHING
    $cron$
);

-- Daily cleanup of old finished jobs at 03:15 UTC (retention from the worker's settings). One per day.
SELECT cron.schedule(
    'job_queue_cleanup_daily',
    '15 3 * * *',
    $cron$
    INSERT INTO public.job_queue (task_type, payload, dedupe_key)
    SELECT 'cleanup', '{}'::jsonb, slot.key
    FROM (SELECT 'cron:cleanup:' || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS key) AS slot
    WHERE NOT EXISTS (
        SELECT 1 FROM public.job_queue q WHERE q.task_type = 'cleanup' AND q.dedupe_key = slot.key
    )
    ON CONFLICT DO NOTHING
    $cron$
);
