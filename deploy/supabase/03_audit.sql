-- deploy/supabase/03_audit.sql: the seed's audit queries, read-only. Run them one by one in the SQL editor
-- (`worker doctor` runs the equivalent checks where these schemas exist).

-- 1. The schedules: name, cadence, active (cadence >= 1 minute, no overlap).
SELECT jobid, jobname, schedule, active, command FROM cron.job ORDER BY jobid;

-- 2. The last runs of the schedules, newest first, with their errors.
SELECT d.jobid, j.jobname, d.status, d.return_message, d.start_time, d.end_time
FROM cron.job_run_details AS d
LEFT JOIN cron.job AS j USING (jobid)
ORDER BY d.start_time DESC
LIMIT 20;

-- 3. pg_net's backlog (only with 02_trigger_via_pg_net.sql): requests waiting, recent responses and errors.
SELECT count(*) AS pending_requests FROM net.http_request_queue;
SELECT count(*) AS responses FROM net._http_response;
SELECT id, status_code, error_msg, created
FROM net._http_response
WHERE error_msg IS NOT NULL OR status_code >= 400
ORDER BY created DESC
LIMIT 20;

-- 4. The queue: jobs by task type and status, the oldest due pending job, the last successful run.
SELECT task_type, status, count(*) AS jobs FROM public.job_queue GROUP BY task_type, status ORDER BY 1, 2;
SELECT now() - min(run_at) AS oldest_due_pending_age
FROM public.job_queue WHERE status = 'pending' AND run_at <= now();
SELECT task_type, max(finished_at) AS last_success
FROM public.job_queue WHERE status = 'succeeded' GROUP BY task_type ORDER BY 1;

-- 5. The jobs the schedules enqueued, newest first, with their outcome.
SELECT id, task_type, status, attempts, dedupe_key, created_at, finished_at, last_error
FROM public.job_queue
WHERE dedupe_key LIKE 'cron:%'
ORDER BY created_at DESC
LIMIT 20;
