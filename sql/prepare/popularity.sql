-- Item popularity in the window: number of events per available catalog item, most popular
-- first (ties: item_id ascending). Items without events follow with n_events = 0, so the list
-- covers every candidate. Used by the popular fallback and the popularity baseline.
-- Inputs:  events, catalog (item_id, available)
-- Output:  item_id, n_events
SELECT c.item_id, coalesce(e.n_events, 0) AS n_events
FROM (SELECT DISTINCT item_id FROM catalog WHERE available) c
LEFT JOIN (SELECT item_id, count(*) AS n_events FROM events GROUP BY item_id) e ON c.item_id = e.item_id
ORDER BY n_events DESC, c.item_id ASC
