-- Ground truth of an evaluated day: the distinct items each user interacted with on that day.
-- Inputs:  window_events (see sql/prepare/window_events.sql)
-- Params:  $dt            the evaluated day, 'YYYY-MM-DD'
-- Extra:   truth_types (event_type)   the ground-truth event types: events.truth_types, or every
--                                     type with a positive weight when that is empty
-- Output:  user_id, item_id (distinct)
SELECT DISTINCT user_id, item_id
FROM window_events
WHERE dt = $dt
  AND invalid_reason IS NULL
  AND event_type IN (SELECT event_type FROM truth_types)
