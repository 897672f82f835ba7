-- Rows of each input partition a run read: the behavior days of its window and its catalog
-- snapshot (every row, invalid ones included; the manifest counts the invalid ones by reason).
-- Params: $first_dt, $last_dt (the run's behavior partitions), $catalog_dt ('YYYY-MM-DD')
-- Tables: behavior, catalog
-- Output: input, dt, n_rows
SELECT input, dt, n_rows
FROM (
    SELECT 'behavior' AS input, dt, count(*) AS n_rows
    FROM behavior
    WHERE dt BETWEEN CAST($first_dt AS DATE) AND CAST($last_dt AS DATE)
    GROUP BY dt
    UNION ALL
    SELECT 'catalog' AS input, dt, count(*) AS n_rows
    FROM catalog
    WHERE dt = CAST($catalog_dt AS DATE)
    GROUP BY dt
) counted
ORDER BY input, dt
