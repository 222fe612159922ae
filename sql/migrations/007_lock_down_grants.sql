-- 007: only the owner, service_role and the admin rule reach the worker's tables, sequences and functions.
-- Supabase's default privileges grant anon and authenticated ALL on new objects in public; RLS stopped row access,
-- not worker_migrations (no RLS), TRUNCATE, job_runs' sequence. Guarded by tests/test_security_grants.py.

-- worker_migrations (created by the migration runner, before any migration): RLS with no policy but service_role's
-- read, which the readiness check needs when the daemon runs as service_role.
ALTER TABLE worker_migrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY worker_migrations_service_role ON worker_migrations FOR SELECT TO service_role USING (true);
GRANT SELECT ON worker_migrations TO service_role;

-- PUBLIC holds no table privilege by default; revoked explicitly so that no default of the database matters.
-- Functions are executable by PUBLIC by default: the trigger functions need no caller's privilege to fire.
REVOKE ALL ON worker_migrations, job_queue, job_runs, job_queue_pause, job_queue_schedule, job_queue_archive,
    job_runs_archive, competitors, competitor_game_stats FROM PUBLIC;
REVOKE ALL ON SEQUENCE job_runs_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION job_queue_check_input(), job_queue_notify_insert(), job_queue_notify_update() FROM PUBLIC;

-- anon (never an admin) loses everything. authenticated keeps what it holds of SELECT, INSERT, UPDATE, DELETE
-- on the tables with an admin policy: an admin request is `authenticated` with is_admin_user() true, and RLS
-- refuses every other one. It loses what RLS does not govern: TRUNCATE, REFERENCES, TRIGGER (and MAINTAIN from
-- PostgreSQL 17), the sequence, the functions, and worker_migrations altogether.
DO $$
DECLARE
    role_name text;
    tables constant text := 'job_queue, job_runs, job_queue_pause, job_queue_schedule, job_queue_archive, '
                            'job_runs_archive, competitors, competitor_game_stats';
BEGIN
    FOR role_name IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated') LOOP
        EXECUTE format('REVOKE ALL ON worker_migrations FROM %I', role_name);
        IF role_name = 'anon' THEN
            EXECUTE format('REVOKE ALL ON %s FROM %I', tables, role_name);
        ELSE
            EXECUTE format('REVOKE TRUNCATE, REFERENCES, TRIGGER ON %s FROM %I', tables, role_name);
            IF current_setting('server_version_num')::int >= 170000 THEN
                EXECUTE format('REVOKE MAINTAIN ON %s FROM %I', tables, role_name);
            END IF;
        END IF;
        EXECUTE format('REVOKE ALL ON SEQUENCE job_runs_id_seq FROM %I', role_name);
        EXECUTE format('REVOKE ALL ON FUNCTION job_queue_check_input(), job_queue_notify_insert(), '
                       'job_queue_notify_update() FROM %I', role_name);
    END LOOP;
END
$$;
