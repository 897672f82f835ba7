-- Why these recommendations? One user's list for one date next to their recent history: for
-- each recommended item, its score split into its three components (score = model + repeat +
-- neighbor: the model part is dot(user_embeddings.embedding, item_vectors.embedding), the repeat
-- part grows with the days the user bought the item in the window, the neighbor part how often
-- the item is taken by the users of the user's items), and the history item whose vector is
-- most similar to it (dot product of the published vectors), with how often the user
-- interacted with it.
-- Params: $user_id, $dt ('YYYY-MM-DD')
-- Tables: recommendations, item_vectors, behavior, run_catalog (titles from the snapshot $dt used)
-- Output: rank, item_id, title, score, model_score, repeat_score, neighbor_score, source,
--         because_item_id, because_title, similarity, because_events
WITH recs AS (
    SELECT rank, item_id, score, repeat_score, neighbor_score, source
    FROM recommendations
    WHERE user_id = $user_id AND dt = CAST($dt AS DATE)
),
history AS (
    SELECT CAST(item_id AS VARCHAR) AS item_id, count(*) AS n_events
    FROM behavior
    WHERE CAST(user_id AS VARCHAR) = $user_id
      AND dt BETWEEN CAST($dt AS DATE) - INTERVAL '29 days' AND CAST($dt AS DATE)
    GROUP BY CAST(item_id AS VARCHAR)
),
vectors AS (
    SELECT item_id, embedding FROM item_vectors WHERE dt = CAST($dt AS DATE)
),
pairs AS (
    SELECT r.rank, r.item_id, r.score, r.source, h.item_id AS because_item_id, h.n_events AS because_events,
           dot(rv.embedding, hv.embedding) AS similarity
    FROM recs r
    JOIN vectors rv ON rv.item_id = r.item_id
    CROSS JOIN history h
    JOIN vectors hv ON hv.item_id = h.item_id
),
best AS (
    SELECT *, row_number() OVER (PARTITION BY rank ORDER BY similarity DESC, because_item_id) AS position
    FROM pairs
),
titles AS (
    SELECT item_id, title FROM run_catalog WHERE dt = CAST($dt AS DATE)
)
SELECT r.rank, r.item_id, t.title, round(r.score, 6) AS score,
       round(r.score - r.repeat_score - r.neighbor_score, 6) AS model_score,
       round(r.repeat_score, 6) AS repeat_score, round(r.neighbor_score, 6) AS neighbor_score, r.source,
       b.because_item_id, bt.title AS because_title, round(b.similarity, 4) AS similarity, b.because_events
FROM recs r
LEFT JOIN best b ON b.rank = r.rank AND b.position = 1
LEFT JOIN titles t ON t.item_id = r.item_id
LEFT JOIN titles bt ON bt.item_id = b.because_item_id
ORDER BY r.rank
