-- New and returning users of a training window: the user segments of the ranking metrics.
--   new_users:       the user's first valid event in the window is on or after $new_since_dt
--                    (the window's last evaluate.new_days days)
--   returning_users: the user has a valid event in the window before $new_since_dt
-- Inputs:  window_events
-- Params:  $first_dt, $last_dt   the training window (of D-1: the lists evaluated on D)
--          $new_since_dt         first day of the window's last evaluate.new_days days
-- Output:  user_id, segment
SELECT CAST(user_id AS VARCHAR) AS user_id,
       CASE WHEN min(dt) >= $new_since_dt THEN 'new_users' ELSE 'returning_users' END AS segment
FROM window_events
WHERE invalid_reason IS NULL AND dt >= $first_dt AND dt <= $last_dt
GROUP BY user_id
