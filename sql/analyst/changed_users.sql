-- Users whose recommendations changed most since the previous published date: overlap of the
-- two lists (shared items / items in today's list); 0 = completely new list. 20 users per date.
-- Tables: recommendations
-- Output: dt, previous_dt, user_id, n_items, n_shared, overlap
WITH dates AS (SELECT DISTINCT dt FROM recommendations),
pairs AS (
    SELECT d.dt, max(p.dt) AS previous_dt
    FROM dates d JOIN dates p ON p.dt < d.dt
    GROUP BY d.dt
),
today AS (
    SELECT p.dt, p.previous_dt, r.user_id, r.item_id
    FROM pairs p JOIN recommendations r ON r.dt = p.dt
),
compared AS (
    SELECT t.dt, t.previous_dt, t.user_id, count(*) AS n_items, count(y.item_id) AS n_shared
    FROM today t
    LEFT JOIN recommendations y ON y.dt = t.previous_dt AND y.user_id = t.user_id AND y.item_id = t.item_id
    WHERE t.user_id IN (SELECT user_id FROM recommendations r2 WHERE r2.dt = t.previous_dt)
    GROUP BY t.dt, t.previous_dt, t.user_id
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY dt ORDER BY CAST(n_shared AS DOUBLE) / n_items, user_id) AS position
    FROM compared
)
SELECT dt, previous_dt, user_id, n_items, n_shared, round(CAST(n_shared AS DOUBLE) / n_items, 4) AS overlap
FROM ranked
WHERE position <= 20
ORDER BY dt, position
