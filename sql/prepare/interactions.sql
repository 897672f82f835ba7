-- One day's user-item interactions: prepare runs this once per day of the window over that
-- day's events and merges the days (the window's n_events and weight are the sums over its
-- days; an item is excluded when any day's events exclude it). Duplicates are removed per day
-- in `events`, and two rows of different days are never duplicates (dt is part of the event).
-- Exclusions, by exclusions.policy:
--   seen_in_window: every item the user had any event with in the window;
--   allow_repeats:  only items with an event in the last exclusions.repeat_after_days days.
-- Inputs:  events (one day)
-- Params:  $policy                'seen_in_window' | 'allow_repeats'
--          $repeat_cutoff_epoch   events at or after this instant (seconds, UTC) still exclude
-- Output:  user_id, item_id, n_events, weight (sum of decayed event weights), excluded
SELECT user_id, item_id, count(*) AS n_events, sum(decayed_weight) AS weight,
       bool_or($policy = 'seen_in_window' OR date_part('epoch', ts) >= $repeat_cutoff_epoch)
           AS excluded
FROM events
GROUP BY user_id, item_id
