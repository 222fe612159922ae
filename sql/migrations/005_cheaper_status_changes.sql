-- 005: no BEFORE UPDATE row trigger on job_queue (PostgreSQL locks each updated row for one, even when no UPDATE OF
-- column is written): inserts keep the input check BEFORE, updates of task_type or payload are checked AFTER and
-- fail the same way (SQLSTATE 23514, the same constraint names); job_queue_created_idx stops deduplicating.
DROP TRIGGER job_queue_check_input ON job_queue;

CREATE TRIGGER job_queue_check_input
    BEFORE INSERT ON job_queue
    FOR EACH ROW EXECUTE FUNCTION job_queue_check_input();

CREATE TRIGGER job_queue_check_input_update
    AFTER UPDATE OF task_type, payload ON job_queue
    FOR EACH ROW EXECUTE FUNCTION job_queue_check_input();

-- job_queue_created_idx's keys (created_at, id) are unique, so deduplication only ever merged the entries of
-- one row's versions (each claim and finish adds one), which bottom-up deletion removes anyway.
ALTER INDEX job_queue_created_idx SET (deduplicate_items = off);
