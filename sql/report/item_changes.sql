-- Items entering the lists (in some list of $dt, in none of $previous_dt) and leaving them, with
-- their title from the catalog snapshot $dt used and the users whose list has them.
-- Params: $dt, $previous_dt ('YYYY-MM-DD')
-- Tables: recommendations, run_catalog
-- Output: item_id, title, n_today, n_before
WITH today AS (
    SELECT item_id, count(*) AS n_users FROM recommendations
    WHERE dt = CAST($dt AS DATE) GROUP BY item_id
),
before AS (
    SELECT item_id, count(*) AS n_users FROM recommendations
    WHERE dt = CAST($previous_dt AS DATE) GROUP BY item_id
),
changed AS (
    SELECT coalesce(t.item_id, b.item_id) AS item_id,
           coalesce(t.n_users, 0) AS n_today, coalesce(b.n_users, 0) AS n_before
    FROM today t FULL JOIN before b ON b.item_id = t.item_id
    WHERE t.item_id IS NULL OR b.item_id IS NULL
)
SELECT c.item_id, rc.title, c.n_today, c.n_before
FROM changed c
LEFT JOIN run_catalog rc ON rc.dt = CAST($dt AS DATE) AND rc.item_id = c.item_id
ORDER BY c.n_today + c.n_before DESC, c.item_id
