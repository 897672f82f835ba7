-- Training events: the valid rows of the window, deduplicated, with a time-decayed weight.
-- Two rows are one event when user, item, event type and timestamp agree.
-- Inputs:  window_events
-- Params:  $first_dt, $last_dt   the training window
--          $end_epoch            end of the run date (exclusive), seconds since 1970-01-01 UTC
--          $half_life_days       an event's weight halves every half_life_days days of age
-- Output:  user_id, item_id, event_type, ts, dt, weight, decayed_weight
SELECT user_id, item_id, event_type, ts, dt, weight,
       weight * power(0.5, greatest(0.0, $end_epoch - date_part('epoch', ts)) / 86400.0 / $half_life_days)
           AS decayed_weight
FROM (
    SELECT DISTINCT user_id, item_id, event_type, ts, dt, weight
    FROM window_events
    WHERE invalid_reason IS NULL AND dt >= $first_dt AND dt <= $last_dt
) deduplicated
