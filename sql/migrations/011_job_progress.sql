-- 011: a running job's progress ({done, total, phase, at}), reported by its handler through TaskContext.progress
-- (worker/progress.py) at most about once a second, so the CLI, the admin page and /metrics can show how far a
-- long job (the game platform sync) has come. Nullable, no default: adding it rewrites nothing.
ALTER TABLE job_queue ADD COLUMN progress jsonb;

COMMENT ON COLUMN job_queue.progress IS
    'Last progress the running attempt reported: {"done", "total", "phase", "at"}; kept after the attempt ends.';
