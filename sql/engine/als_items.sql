-- The items' ALS half-sweep as a plan (engine.url = df://...): each row of engine_als_parts is
-- a range of items ($first, $count), whose rows the function gathers from the users' rows
-- staged at $user_rows (each item's users in user order, as the in-process transpose orders
-- them; gathered once per executor process), then solves against the users' factors staged
-- at $fixed ($n_fixed rows of $factors values). The factors come back concatenated.
SELECT first, recjob_als_items(first, count, $user_rows, $fixed, $n_fixed, $factors, $alpha, $lambda) AS factors
FROM engine_als_parts
