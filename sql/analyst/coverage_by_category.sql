-- Catalog coverage by category: per published date, the share of each category's available
-- items that appear in at least one user's list ('(none)' for items without a category).
-- Available items are those the run scored (item_vectors), with their categories from the
-- catalog snapshot each date's run used (run_catalog), not the newest.
-- Tables: recommendations, item_vectors, run_catalog
-- Output: dt, category, n_items, n_recommended, coverage
WITH items AS (
    SELECT v.dt, v.item_id, coalesce(c.category, '(none)') AS category
    FROM item_vectors v
    LEFT JOIN run_catalog c ON c.dt = v.dt AND c.item_id = v.item_id
),
recommended AS (
    SELECT DISTINCT dt, item_id FROM recommendations
),
per_category AS (
    SELECT i.dt, i.category, count(*) AS n_items, count(r.item_id) AS n_recommended
    FROM items i
    LEFT JOIN recommended r ON r.dt = i.dt AND r.item_id = i.item_id
    GROUP BY i.dt, i.category
)
SELECT dt, category, n_items, n_recommended, coverage
FROM (
    SELECT dt, category, n_items, n_recommended,
           round(CAST(n_recommended AS DOUBLE) / n_items, 4) AS coverage,
           -- Ordered through a window: a plain ORDER BY here loses its later keys in
           -- DataFusion 55 (it wrongly treats dt as a key after the cross join above).
           row_number() OVER (ORDER BY dt, n_recommended DESC, category) AS position
    FROM per_category
) ordered
ORDER BY position
