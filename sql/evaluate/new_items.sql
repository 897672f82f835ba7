-- Share of a run's own recommendations that go to new items, for each cut-off K.
--   new item:         no valid event in the training window before $new_since_dt (first seen in
--                     the window's last evaluate.new_days days, or not seen at all)
--   new_item_share@K = recommendations at rank <= K of new items / recommendations at rank <= K
-- Inputs:  exposure (item_id, rank, n_users): lists with item_id at rank, ranks up to max(K)
--          ks (k), window_events
-- Params:  $first_dt, $last_dt   the training window of the run date
--          $new_since_dt         first day of the window's last evaluate.new_days days
-- Output:  k, new_item_share, n_recs
WITH established AS (
    SELECT DISTINCT CAST(item_id AS VARCHAR) AS item_id
    FROM window_events
    WHERE invalid_reason IS NULL AND dt >= $first_dt AND dt < $new_since_dt AND dt <= $last_dt
)
SELECT ks.k,
       CAST(sum(CASE WHEN e.item_id IS NULL THEN x.n_users ELSE 0 END) AS DOUBLE)
           / CAST(sum(x.n_users) AS DOUBLE) AS new_item_share,
       sum(x.n_users) AS n_recs
FROM ks
JOIN exposure x ON x.rank <= ks.k
LEFT JOIN established e ON e.item_id = x.item_id
GROUP BY ks.k
ORDER BY ks.k
