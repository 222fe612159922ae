-- 003: operator tools: pause flags, recurring schedules' state, and the archive (kept out of the hot path).

-- Pause flags: one row per paused task type, '*' pauses every task type. The daemon's claim skips paused
-- types; explicit claims (run-now, /api/jobs/run with ids) ignore the flags. Every replica reads this table,
-- so a pause takes effect at each replica's next claim.
CREATE TABLE job_queue_pause (
    task_type  text PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    paused_by  text,
    reason     text,
    CONSTRAINT job_queue_pause_task_type_check
        CHECK (task_type = '*' OR task_type ~ '^[a-z][a-z0-9_.:-]{0,62}[a-z0-9]$|^[a-z]$'),
    CONSTRAINT job_queue_pause_reason_check CHECK (reason IS NULL OR length(reason) <= 1000)
);

COMMENT ON TABLE job_queue_pause IS 'Paused task types (''*'' = all): not claimed by automatic processing.';

-- Recurring schedules: the last slot each schedule enqueued. The scheduler advances last_slot with a
-- conditional upsert (only forwards), in the same transaction as the enqueue, so a slot is enqueued once
-- whatever the number of replicas, and a finished slot is never enqueued again.
CREATE TABLE job_queue_schedule (
    name              text PRIMARY KEY,
    cron              text NOT NULL,
    task_type         text NOT NULL,
    last_slot         timestamptz NOT NULL,
    last_job_id       uuid,
    last_enqueued_at  timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_queue_schedule_name_check CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$')
);

COMMENT ON TABLE job_queue_schedule IS 'Recurring schedules: the latest slot each one enqueued.';

-- Listing pages by creation time; cleanup and archive walk the same index from its old end (a job finished
-- long ago was created long ago), so finishing a job maintains no index of its own for them.
CREATE INDEX job_queue_created_idx ON job_queue (created_at DESC, id DESC);

-- The archive: finished jobs moved out of job_queue with their attempt history. No trigger, no claim index.
CREATE TABLE job_queue_archive (
    id            uuid PRIMARY KEY,
    task_type     text NOT NULL,
    payload       jsonb NOT NULL,
    status        text NOT NULL,
    priority      integer NOT NULL,
    run_at        timestamptz NOT NULL,
    attempts      integer NOT NULL,
    max_attempts  integer NOT NULL,
    last_error    text,
    result        jsonb,
    dedupe_key    text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    archived_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_queue_archive_archived_idx ON job_queue_archive (archived_at);
CREATE INDEX job_queue_archive_task_type_idx ON job_queue_archive (task_type, finished_at);

CREATE TABLE job_runs_archive (
    id           bigint PRIMARY KEY,
    job_id       uuid NOT NULL REFERENCES job_queue_archive (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    worker_id    text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    outcome      text NOT NULL,
    error        text,
    duration_ms  integer NOT NULL
);

CREATE INDEX job_runs_archive_job_idx ON job_runs_archive (job_id, attempt);

COMMENT ON TABLE job_queue_archive IS 'Finished jobs moved out of job_queue by `worker jobs archive`.';
COMMENT ON TABLE job_runs_archive IS 'The attempt history of archived jobs.';

-- Row level security, as on job_queue: service_role or an admin session.
ALTER TABLE job_queue_pause ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_queue_schedule ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_queue_archive ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_runs_archive ENABLE ROW LEVEL SECURITY;

CREATE POLICY job_queue_pause_service_role ON job_queue_pause FOR ALL TO service_role USING (true) WITH CHECK (true);
CREATE POLICY job_queue_pause_admin ON job_queue_pause FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY job_queue_schedule_service_role ON job_queue_schedule FOR ALL TO service_role
    USING (true) WITH CHECK (true);
CREATE POLICY job_queue_schedule_admin ON job_queue_schedule FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY job_queue_archive_service_role ON job_queue_archive FOR ALL TO service_role
    USING (true) WITH CHECK (true);
CREATE POLICY job_queue_archive_admin ON job_queue_archive FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY job_runs_archive_service_role ON job_runs_archive FOR ALL TO service_role
    USING (true) WITH CHECK (true);
CREATE POLICY job_runs_archive_admin ON job_runs_archive FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());

GRANT SELECT, INSERT, UPDATE, DELETE
    ON job_queue_pause, job_queue_schedule, job_queue_archive, job_runs_archive TO service_role;
