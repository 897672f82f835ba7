-- Every published metric row, for the report's tables, trends and checks.
-- Tables: metrics
-- Output: d (evaluated_dt as text), metric, segment, k, value
SELECT CAST(evaluated_dt AS VARCHAR) AS d, metric, segment, k, value
FROM metrics
