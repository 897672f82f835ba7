-- Why the neighbour term? One user's list for one date: each recommended item next to the items
-- of the user's window among its published neighbours (item_neighbors: the items most often
-- taken by the same users in the window), with the similarity s and the user's events with the
-- neighbour. An item's neighbor_score is hybrid.neighbor_weight x D_u x the sum of s over these
-- (the user's items with a positive weight), divided by the user's largest such sum, D_u the
-- user's largest model part among the items with a sum (README "The model"); an item with no
-- such neighbour has neighbor_score 0. Needs a run with the term on.
-- Params: $user_id, $dt ('YYYY-MM-DD'), $lookback_days (the run's window.lookback_days)
-- Tables: recommendations, item_neighbors, behavior
-- Output: rank, item_id, neighbor_score, because_item_id, similarity, because_events
WITH recs AS (
    SELECT rank, item_id, neighbor_score
    FROM recommendations
    WHERE user_id = $user_id AND dt = CAST($dt AS DATE)
),
history AS (
    SELECT CAST(item_id AS VARCHAR) AS item_id, count(*) AS n_events
    FROM behavior
    WHERE CAST(user_id AS VARCHAR) = $user_id
      AND dt > CAST($dt AS DATE) - CAST(concat($lookback_days, ' days') AS INTERVAL)
      AND dt <= CAST($dt AS DATE)
    GROUP BY CAST(item_id AS VARCHAR)
)
SELECT r.rank, r.item_id, round(r.neighbor_score, 6) AS neighbor_score,
       n.neighbor_id AS because_item_id, round(n.similarity, 4) AS similarity,
       h.n_events AS because_events
FROM recs r
JOIN item_neighbors n ON n.dt = CAST($dt AS DATE) AND n.item_id = r.item_id
JOIN history h ON h.item_id = n.neighbor_id
ORDER BY r.rank, similarity DESC, because_item_id
