-- 015: job ids ordered by time (UUID version 7, RFC 9562): the first 48 bits are the insert transaction's start
-- (now(), as created_at's default) in Unix milliseconds, then the version, 74 random bits and the variant.
-- A random id (version 4) put each new job, and each of its row versions (claim, finish: never HOT updates), at a
-- random place of job_queue_pkey and job_runs_job_idx; and the claim takes jobs of one batch (one run_at) in id
-- order, so a claim of a random-id batch read its rows from all over the heap. Time-ordered ids keep the hot end
-- of both indexes and the claimed rows of a batch together (docs/maintenance.md, "Index entries per job").
-- Ids already stored stay as they are: nothing orders by id across batches, and no id changes.
-- PostgreSQL 15 has no uuidv7(); this is the same layout built from gen_random_uuid(): its bytes 1-6 replaced by
-- the time, its version nibble (0100) turned into 0111 by setting bits 52 and 53 (set_bit counts from the low bit
-- of the first byte) (tests/test_ids.py).
CREATE FUNCTION job_queue_uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(date_part('epoch', now()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

COMMENT ON FUNCTION job_queue_uuidv7() IS
    'A version-7 UUID whose time is the transaction''s start (now()): job_queue.id''s default.';

ALTER TABLE job_queue ALTER COLUMN id SET DEFAULT job_queue_uuidv7();
