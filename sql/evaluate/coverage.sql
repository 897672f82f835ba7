-- Coverage of a run's own lists, for each cut-off K.
--   catalog_coverage@K = distinct items in any user's first K / candidate items of the snapshot
--   user_coverage@K    = users with at least K recommendations / active users of the window
-- Inputs:  exposure (item_id, rank, n_users): lists with item_id at rank, ranks up to max(K)
--          list_lengths (n, n_users): lists with n entries
--          ks (k)
-- Params:  $n_candidates, $n_active
-- Output:  k, catalog_coverage, user_coverage, n_items, n_full_users
WITH items_at AS (
    SELECT ks.k, count(DISTINCT e.item_id) AS n_items
    FROM ks JOIN exposure e ON e.rank <= ks.k
    GROUP BY ks.k
),
users_at AS (
    SELECT ks.k, sum(l.n_users) AS n_full_users
    FROM ks JOIN list_lengths l ON l.n >= ks.k
    GROUP BY ks.k
)
SELECT ks.k,
       CAST(coalesce(i.n_items, 0) AS DOUBLE) / $n_candidates AS catalog_coverage,
       CAST(coalesce(u.n_full_users, 0) AS DOUBLE) / $n_active AS user_coverage,
       coalesce(i.n_items, 0) AS n_items,
       coalesce(u.n_full_users, 0) AS n_full_users
FROM ks
LEFT JOIN items_at i ON i.k = ks.k
LEFT JOIN users_at u ON u.k = ks.k
ORDER BY ks.k
