-- User-item interactions: the weight of each item in a user's vector.
-- Inputs:  events
-- Output:  user_id, item_id, n_events, weight (sum of decayed event weights), last_ts
SELECT user_id, item_id, count(*) AS n_events, sum(decayed_weight) AS weight, max(ts) AS last_ts
FROM events
GROUP BY user_id, item_id
