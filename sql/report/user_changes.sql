-- How the top 10 of each user changed since the previous published date: users with a list on
-- both dates, of those the ones whose top 10 holds a new item, and the ones with a different
-- item at some rank (order changes included); users with a list on one date only.
-- Params: $dt, $previous_dt ('YYYY-MM-DD')
-- Tables: recommendations
-- Output: users_both, users_changed_items, users_changed_order, users_new, users_gone
WITH today AS (
    SELECT user_id, rank, item_id FROM recommendations
    WHERE dt = CAST($dt AS DATE) AND rank <= 10
),
before AS (
    SELECT user_id, rank, item_id FROM recommendations
    WHERE dt = CAST($previous_dt AS DATE) AND rank <= 10
),
shared AS (
    SELECT t.user_id, count(*) AS n
    FROM today t JOIN before b ON b.user_id = t.user_id AND b.item_id = t.item_id
    GROUP BY t.user_id
),
same_rank AS (
    SELECT t.user_id, count(*) AS n
    FROM today t JOIN before b ON b.user_id = t.user_id AND b.rank = t.rank AND b.item_id = t.item_id
    GROUP BY t.user_id
),
lengths AS (
    SELECT coalesce(t.user_id, b.user_id) AS user_id, coalesce(t.n, 0) AS n_today, coalesce(b.n, 0) AS n_before
    FROM (SELECT user_id, count(*) AS n FROM today GROUP BY user_id) t
    FULL JOIN (SELECT user_id, count(*) AS n FROM before GROUP BY user_id) b ON b.user_id = t.user_id
),
users AS (
    SELECT l.n_today > 0 AND l.n_before > 0 AS on_both,
           l.n_today, l.n_before, coalesce(s.n, 0) AS n_shared, coalesce(r.n, 0) AS n_same_rank
    FROM lengths l
    LEFT JOIN shared s ON s.user_id = l.user_id
    LEFT JOIN same_rank r ON r.user_id = l.user_id
)
SELECT
    coalesce(sum(CASE WHEN on_both THEN 1 ELSE 0 END), 0) AS users_both,
    coalesce(sum(CASE WHEN on_both AND n_shared < n_today THEN 1 ELSE 0 END), 0) AS users_changed_items,
    coalesce(sum(CASE WHEN on_both AND (n_same_rank < n_today OR n_today <> n_before) THEN 1 ELSE 0 END), 0) AS users_changed_order,
    coalesce(sum(CASE WHEN n_before = 0 THEN 1 ELSE 0 END), 0) AS users_new,
    coalesce(sum(CASE WHEN n_today = 0 THEN 1 ELSE 0 END), 0) AS users_gone
FROM users
