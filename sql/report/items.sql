-- Per item of the catalog snapshot a published date used: its events in the run's training
-- window (the catalog's popularity) and how many users have it in their list (any rank).
-- The behavior item column is configuration (input.columns.item_id): the report puts its
-- quoted name in place of "item_id" below.
-- Params: $dt (the published date), $first_dt, $last_dt (its training window)
-- Tables: run_catalog, behavior, recommendations
-- Output: item_id, n_events, n_recs
WITH events AS (
    SELECT CAST("item_id" AS VARCHAR) AS item_id, count(*) AS n_events
    FROM behavior
    WHERE dt BETWEEN CAST($first_dt AS DATE) AND CAST($last_dt AS DATE)
    GROUP BY CAST("item_id" AS VARCHAR)
),
recs AS (
    SELECT item_id, count(*) AS n_recs
    FROM recommendations
    WHERE dt = CAST($dt AS DATE)
    GROUP BY item_id
)
SELECT c.item_id, coalesce(e.n_events, 0) AS n_events, coalesce(r.n_recs, 0) AS n_recs
FROM run_catalog c
LEFT JOIN events e ON e.item_id = c.item_id
LEFT JOIN recs r ON r.item_id = c.item_id
WHERE c.dt = CAST($dt AS DATE)
