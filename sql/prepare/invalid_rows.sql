-- Invalid rows of a training window, by reason (recorded in the manifest as invalid_rows).
-- Inputs:  window_events
-- Params:  $first_dt, $last_dt   the training window
-- Output:  reason, n_rows; plus one row reason = 'total' counting every row of the window
SELECT invalid_reason AS reason, count(*) AS n_rows
FROM window_events
WHERE dt >= $first_dt AND dt <= $last_dt AND invalid_reason IS NOT NULL
GROUP BY invalid_reason
UNION ALL
SELECT 'total' AS reason, count(*) AS n_rows
FROM window_events
WHERE dt >= $first_dt AND dt <= $last_dt
