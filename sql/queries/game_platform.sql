-- Named queries of worker/game_platform/sync.py. Parameters are positional ($n); nothing here is built from strings.

-- name: select_competitors
-- Every competitor to consider, with whether its stats are fresh enough to skip.
-- $1 coach id (null = every coach), $2 stale-after seconds (null = nothing is fresh).
SELECT c.id, c.platform_player_id,
       coalesce($2::float8 IS NOT NULL AND s.fetched_at > now() - make_interval(secs => $2::float8), false)
           AS fresh
FROM competitors c
LEFT JOIN competitor_game_stats s ON s.competitor_id = c.id
WHERE ($1::uuid IS NULL OR c.coach_id = $1::uuid)
ORDER BY c.id;

-- name: upsert_stats
-- One batch of fetched stats, as parallel arrays (one element per competitor), in one statement.
-- A row whose figures changed (or is new) is written; an unchanged row only gets its fetched_at advanced. A
-- response older than what we hold (platform_updated_at went backwards) counts as unchanged.
-- Returns how many rows were written (updated) and how many were unchanged.
WITH incoming AS (
    SELECT t.*
    FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::int[], $6::int[], $7::timestamptz[])
        AS t (competitor_id, games_played, wins, losses, draws, rating, platform_updated_at)
    JOIN competitors c ON c.id = t.competitor_id
),
written AS (
    INSERT INTO competitor_game_stats AS s
        (competitor_id, games_played, wins, losses, draws, rating, platform_updated_at, fetched_at)
    SELECT i.competitor_id, i.games_played, i.wins, i.losses, i.draws, i.rating, i.platform_updated_at, now()
    FROM incoming i
    ON CONFLICT (competitor_id) DO UPDATE SET
        games_played = EXCLUDED.games_played,
        wins = EXCLUDED.wins,
        losses = EXCLUDED.losses,
        draws = EXCLUDED.draws,
        rating = EXCLUDED.rating,
        platform_updated_at = EXCLUDED.platform_updated_at,
        fetched_at = EXCLUDED.fetched_at,
        updated_at = now()
    WHERE (s.games_played, s.wins, s.losses, s.draws, s.rating, s.platform_updated_at)
              IS DISTINCT FROM
          (EXCLUDED.games_played, EXCLUDED.wins, EXCLUDED.losses, EXCLUDED.draws, EXCLUDED.rating,
           EXCLUDED.platform_updated_at)
      AND EXCLUDED.platform_updated_at >= s.platform_updated_at
    RETURNING s.competitor_id
),
touched AS (
    UPDATE competitor_game_stats AS s
    SET fetched_at = now()
    FROM incoming i
    WHERE s.competitor_id = i.competitor_id
      AND NOT ((s.games_played, s.wins, s.losses, s.draws, s.rating, s.platform_updated_at)
                   IS DISTINCT FROM
               (i.games_played, i.wins, i.losses, i.draws, i.rating, i.platform_updated_at)
               AND i.platform_updated_at >= s.platform_updated_at)
    RETURNING s.competitor_id
)
SELECT (SELECT count(*) FROM written)::int AS updated, (SELECT count(*) FROM touched)::int AS unchanged;

-- name: preview_stats
-- The dry run's upsert_stats: the same parallel arrays, the same comparison, nothing written.
WITH incoming AS (
    SELECT t.*
    FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::int[], $6::int[], $7::timestamptz[])
        AS t (competitor_id, games_played, wins, losses, draws, rating, platform_updated_at)
    JOIN competitors c ON c.id = t.competitor_id
)
SELECT count(*) FILTER (WHERE changed)::int AS updated, count(*) FILTER (WHERE NOT changed)::int AS unchanged
FROM (
    SELECT s.competitor_id IS NULL
           OR ((s.games_played, s.wins, s.losses, s.draws, s.rating, s.platform_updated_at)
                   IS DISTINCT FROM
               (i.games_played, i.wins, i.losses, i.draws, i.rating, i.platform_updated_at)
               AND i.platform_updated_at >= s.platform_updated_at) AS changed
    FROM incoming i
    LEFT JOIN competitor_game_stats s ON s.competitor_id = i.competitor_id
) AS compared;

-- name: insert_competitors
-- Seeding (demo, tests, benchmarks): parallel arrays of coach id, name, platform player id.
INSERT INTO competitors (coach_id, name, platform_player_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
ON CONFLICT (platform_player_id) DO NOTHING
RETURNING id;
