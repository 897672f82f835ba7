-- Ranking metrics of a set of lists against one day's ground truth, for each cut-off K.
-- Definitions (README.md "Metrics"): G(u) = truth of user u, R_K(u) = u's first K items.
--   evaluated users = users with non-empty G(u) who have a list
--   recall@K    = mean |R_K(u) ∩ G(u)| / |G(u)|
--   precision@K = mean |R_K(u) ∩ G(u)| / K
--   ndcg@K      = mean DCG/IDCG, binary gain, discount 1/log2(rank+1), IDCG over min(|G(u)|, K) hits
--   mrr@K       = mean 1/rank of the first hit within K (0 if none)
--   hit_rate@K  = share of evaluated users with at least one hit within K
--   map@K       = mean AP@K, AP@K = sum over hits within K of (hits up to its rank) / rank,
--                 divided by min(|G(u)|, K) (Spark's meanAveragePrecisionAt)
--   n_listed    = users with a list, evaluated or not (Spark's conventions average over them,
--                 an empty G(u) counting 0)
-- Inputs:  recs (user_id, rank, item_id): the lists (those of users without truth may be left
--          out), truth (user_id, item_id) distinct, ks (k), positions (p): 1 .. max(k)
-- Params:  $n_listed  users with a list
-- Output:  k, n_users, recall, precision, ndcg, mrr, hit_rate, map, n_listed
WITH evaluated AS (
    SELECT t.user_id, count(*) AS n_truth
    FROM truth t
    WHERE t.user_id IN (SELECT user_id FROM recs)
    GROUP BY t.user_id
),
hits AS (
    SELECT r.user_id, r.rank,
           row_number() OVER (PARTITION BY r.user_id ORDER BY r.rank) AS nth
    FROM recs r
    JOIN truth t ON r.user_id = t.user_id AND r.item_id = t.item_id
),
per_user AS (
    SELECT e.user_id, ks.k, e.n_truth,
           count(h.rank) AS n_hits,
           min(h.rank) AS first_hit,
           coalesce(sum(1.0 / log2(h.rank + 1.0)), 0.0) AS dcg,
           coalesce(sum(CAST(h.nth AS DOUBLE) / h.rank), 0.0) AS precision_sum
    FROM evaluated e
    CROSS JOIN ks
    LEFT JOIN hits h ON h.user_id = e.user_id AND h.rank <= ks.k
    GROUP BY e.user_id, ks.k, e.n_truth
),
ideal AS (
    SELECT n.p AS n, sum(1.0 / log2(i.p + 1.0)) AS idcg
    FROM positions n
    JOIN positions i ON i.p <= n.p
    GROUP BY n.p
)
SELECT u.k,
       count(*) AS n_users,
       avg(CAST(u.n_hits AS DOUBLE) / u.n_truth) AS recall,
       avg(CAST(u.n_hits AS DOUBLE) / u.k) AS precision,
       avg(u.dcg / i.idcg) AS ndcg,
       avg(CASE WHEN u.first_hit IS NULL THEN 0.0 ELSE 1.0 / u.first_hit END) AS mrr,
       avg(CASE WHEN u.n_hits > 0 THEN 1.0 ELSE 0.0 END) AS hit_rate,
       avg(u.precision_sum / least(u.n_truth, u.k)) AS map,
       $n_listed AS n_listed
FROM per_user u
JOIN ideal i ON i.n = least(u.n_truth, u.k)
GROUP BY u.k
ORDER BY u.k
