-- Each day's user-item interactions: prepare runs this over the `events` of a run of
-- consecutive days of the window, puts a run of several days in date order itself (a single
-- day needs no sort), and merges the days in that order (the window's n_events and weight are
-- the sums over its days; an item is excluded when any day's events exclude it).
-- Duplicates are removed in `events`, and two rows of different days are never duplicates
-- (dt is part of the event).
-- Exclusions, by exclusions.policy:
--   seen_in_window: every item the user had any event with in the window;
--   allow_repeats:  only items with an event in the last exclusions.repeat_after_days days.
-- Inputs:  events (one or more days)
-- Params:  $policy                'seen_in_window' | 'allow_repeats'
--          $repeat_cutoff_epoch   events at or after this instant (seconds, UTC) still exclude
-- Output:  user_id, item_id, n_events, weight (sum of decayed event weights), excluded, dt;
--          in no particular order
SELECT user_id, item_id, count(*) AS n_events, sum(decayed_weight) AS weight,
       bool_or($policy = 'seen_in_window' OR date_part('epoch', ts) >= $repeat_cutoff_epoch)
           AS excluded,
       dt
FROM events
GROUP BY dt, user_id, item_id
