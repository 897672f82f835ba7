-- A few users' lists of a published date: three personal lists at evenly spread positions of
-- the user ids and one popularity list, with titles from the date's catalog snapshot and the
-- score's components (score = model part + repeat_score + neighbor_score).
-- Params: $dt ('YYYY-MM-DD')
-- Tables: recommendations, run_catalog, user_embeddings
-- Output: user_id, source, n_events, rank, item_id, title, score, repeat_score, neighbor_score
WITH users AS (
    SELECT user_id, min(source) AS source FROM recommendations
    WHERE dt = CAST($dt AS DATE) GROUP BY user_id
),
numbered AS (
    SELECT user_id, source,
           CAST(row_number() OVER (PARTITION BY source ORDER BY user_id) AS BIGINT) - 1 AS position,
           count(*) OVER (PARTITION BY source) AS n
    FROM users
),
sampled AS (
    SELECT user_id FROM numbered
    WHERE (source = 'personal' AND position IN (n / 6, n / 2, (5 * n) / 6))
       OR (source = 'popular' AND position = n / 2)
)
SELECT r.user_id, r.source, u.n_events, r.rank, r.item_id, c.title, r.score, r.repeat_score,
       r.neighbor_score
FROM recommendations r
JOIN sampled s ON s.user_id = r.user_id
LEFT JOIN run_catalog c ON c.dt = r.dt AND c.item_id = r.item_id
LEFT JOIN user_embeddings u ON u.dt = r.dt AND u.user_id = r.user_id
WHERE r.dt = CAST($dt AS DATE)
ORDER BY r.source, r.user_id, r.rank
