-- One ALS half-sweep as a plan (engine.url = df://...): each staged row's exact minimiser
-- given the fixed side's factors staged at $fixed ($n_fixed rows of $factors values, read and
-- prepared once per executor process).
-- Inputs: engine_als_rows(row, other, weight): a row's observations, the other side's rows
-- and their decayed weights, in the order the in-process kernel solves them.
SELECT row, recjob_als(other, weight, $fixed, $n_fixed, $factors, $alpha, $lambda) AS factor
FROM engine_als_rows
