-- Share of a run's own recommendations that go to new items, for each cut-off K.
--   new item:         no valid event in the training window before $new_since_dt (first seen in
--                     the window's last evaluate.new_days days, or not seen at all)
--   new_item_share@K = recommendations at rank <= K of new items / recommendations at rank <= K
-- Inputs:  recs (user_id, rank, item_id), ks (k), window_events
-- Params:  $first_dt, $last_dt   the training window of the run date
--          $new_since_dt         first day of the window's last evaluate.new_days days
-- Output:  k, new_item_share, n_recs
WITH established AS (
    SELECT DISTINCT CAST(item_id AS VARCHAR) AS item_id
    FROM window_events
    WHERE invalid_reason IS NULL AND dt >= $first_dt AND dt < $new_since_dt AND dt <= $last_dt
)
SELECT ks.k,
       avg(CASE WHEN e.item_id IS NULL THEN 1.0 ELSE 0.0 END) AS new_item_share,
       count(*) AS n_recs
FROM ks
JOIN recs r ON r.rank <= ks.k
LEFT JOIN established e ON e.item_id = r.item_id
GROUP BY ks.k
ORDER BY ks.k
