-- Window events: every behavior row of the partitions read, each tagged with why it is invalid.
-- A timestamp before its partition's day is valid (events land late); one at or after the end
-- of that day is not.
-- Inputs:  behavior (user_id, item_id, event_type, ts, value, dt)   Hive-partitioned by dt
--          event_weights (event_type, weight)                      from events.weights
--          catalog (item_id, ...)                                   the run's catalog snapshot
-- Params:  $first_dt, $last_dt   partitions to read, 'YYYY-MM-DD' (the dt filter prunes them)
-- Output:  user_id, item_id, event_type, ts, value, dt, weight, invalid_reason (NULL = valid)
SELECT b.user_id, b.item_id, b.event_type, b.ts, b.value, b.dt, w.weight,
       CASE
           WHEN b.user_id IS NULL THEN 'null_user_id'
           WHEN b.user_id = '' THEN 'empty_user_id'
           WHEN b.item_id IS NULL THEN 'null_item_id'
           WHEN b.ts IS NULL THEN 'null_ts'
           -- An event cannot happen after the day its partition holds: its weight would not
           -- decay and it would exclude the item as if bought on the run date.
           WHEN date_part('epoch', b.ts) >= date_part('epoch', CAST(b.dt AS DATE)) + 86400
               THEN 'ts_after_partition'
           WHEN w.weight IS NULL THEN 'unknown_event_type'
           WHEN c.item_id IS NULL THEN 'item_not_in_catalog'
       END AS invalid_reason
FROM behavior b
LEFT JOIN event_weights w ON b.event_type = w.event_type
LEFT JOIN (SELECT DISTINCT item_id FROM catalog) c ON b.item_id = c.item_id
WHERE b.dt >= $first_dt AND b.dt <= $last_dt
