-- Recall trend across published dates, model vs the popularity baseline, with the lift.
-- A date whose previous day had no published lists has NULL values (not evaluated).
-- Tables: metrics
-- Output: evaluated_dt, k, n_users, recall, baseline_recall, lift (recall / baseline_recall)
SELECT m.evaluated_dt, m.k, m.n_users,
       round(m.value, 6) AS recall,
       round(b.value, 6) AS baseline_recall,
       round(m.value / nullif(b.value, 0), 4) AS lift
FROM metrics m
JOIN metrics b
  ON b.dt = m.dt AND b.k = m.k AND b.metric = 'recall' AND b.segment = 'baseline_popular'
WHERE m.metric = 'recall' AND m.segment = 'all'
ORDER BY m.evaluated_dt, m.k
