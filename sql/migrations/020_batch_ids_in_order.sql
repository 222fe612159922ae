-- 020: the ids of one batch enqueue rise in the batch's order. With 015's default every id of a statement
-- carries the same millisecond (the transaction's start) and random bits below it, so a batch's rows entered
-- job_queue_pkey and job_queue_claim_idx (one priority, one run_at, then the id) each at a random place among the
-- batch's entries: a descent of each index per row. In the batch's order, each entry goes to the right edge, which
-- an insert reaches without a descent (the B-tree's cached rightmost leaf), and the claim reads the batch's rows in
-- the order they were inserted. queue.sql's enqueue_many and enqueue_many_no_dedupe give each row
-- job_queue_uuidv7_nth(one head per statement, the row's place in the batch); the column's default is unchanged.

-- The first 12 bytes of a batch's ids: those of job_queue_uuidv7_at(now()) (the millisecond of the job's
-- created_at, the version, 12 random bits, the variant, 30 random bits), whose last 4 bytes give way to the row's
-- number. One per statement: the ids of two statements differ in their heads' random bits or their milliseconds.
CREATE FUNCTION job_queue_uuidv7_head() RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT substring(uuid_send(job_queue_uuidv7_at(now())) FROM 1 FOR 12)
$$;

-- The id of row n of a batch: its head, then n's low 32 bits. The ids of one head rise with n, and are distinct
-- for the distinct n of a batch's rows (WITH ORDINALITY over arrays of fewer than 2^32 elements: a parameter holds
-- at most 1 GB) (tests/test_ids.py).
CREATE FUNCTION job_queue_uuidv7_nth(head bytea, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT encode(head || substring(int8send(n) FROM 5), 'hex')::uuid
$$;

COMMENT ON FUNCTION job_queue_uuidv7_head() IS
    'The first 12 bytes of a batch''s version-7 ids: the transaction''s millisecond, the version, random bits.';
COMMENT ON FUNCTION job_queue_uuidv7_nth(bytea, bigint) IS
    'The id of row n of a batch: its head (job_queue_uuidv7_head()), then n''s low 32 bits.';
