-- Queries of `worker demo`.

-- name: stats_rows
-- How many competitors have synced statistics.
SELECT count(*) FROM competitor_game_stats;
