-- Ground truth of an evaluated day: the distinct items each user interacted with on that day.
-- Inputs:  window_events (see sql/prepare/window_events.sql)
-- Params:  $dt            the evaluated day, 'YYYY-MM-DD'
--          $all_types     true: every valid event counts; false: only types in truth_types
-- Extra:   truth_types (event_type)   events.truth_types
-- Output:  user_id, item_id (distinct)
SELECT DISTINCT user_id, item_id
FROM window_events
WHERE dt = $dt
  AND invalid_reason IS NULL
  AND ($all_types OR event_type IN (SELECT event_type FROM truth_types))
