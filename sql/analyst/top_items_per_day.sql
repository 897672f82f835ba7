-- Top recommended items per day: for each published date, the 10 items recommended to the most
-- users (any rank), with their title and mean rank.
-- Tables: recommendations, run_catalog (titles from the snapshot each date's run used)
-- Output: dt, position, item_id, title, n_users, mean_rank
WITH counts AS (
    SELECT dt, item_id, count(*) AS n_users, avg(rank) AS mean_rank
    FROM recommendations
    GROUP BY dt, item_id
),
ranked AS (
    SELECT dt, item_id, n_users, mean_rank,
           row_number() OVER (PARTITION BY dt ORDER BY n_users DESC, item_id) AS position
    FROM counts
)
SELECT r.dt, r.position, r.item_id, t.title, r.n_users, round(r.mean_rank, 2) AS mean_rank
FROM ranked r
LEFT JOIN run_catalog t ON t.dt = r.dt AND t.item_id = r.item_id
WHERE r.position <= 10
ORDER BY r.dt, r.position
