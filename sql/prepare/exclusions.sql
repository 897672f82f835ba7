-- Items a user must not be recommended, by exclusions.policy:
--   seen_in_window: every item the user had any event with in the window;
--   allow_repeats:  only items with an event in the last exclusions.repeat_after_days days.
-- Inputs:  events
-- Params:  $policy                'seen_in_window' | 'allow_repeats'
--          $repeat_cutoff_epoch   events at or after this instant (seconds, UTC) still exclude
-- Output:  user_id, item_id (distinct)
SELECT DISTINCT user_id, item_id
FROM events
WHERE $policy = 'seen_in_window' OR date_part('epoch', ts) >= $repeat_cutoff_epoch
