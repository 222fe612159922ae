-- deploy/supabase/99_rollback.sql: remove what 01/02 scheduled. Safe to run when some are already gone.
-- It does not drop the extensions (other schedules may use them) nor touch job_queue or Vault secrets.
-- After it, turn the daemon's built-in schedules back on (WORKER_SCHEDULES_ENABLED=true) if you want them.

SELECT cron.unschedule(jobid)
FROM cron.job
WHERE jobname IN ('job_queue_game_platform_sync', 'job_queue_cleanup_daily', 'job_queue_trigger_worker');

-- The seed's own schedules, if they are still there (pg_net to the edge function / to /api/jobs/run):
-- SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname IN ('sync_game_platform_stats');
