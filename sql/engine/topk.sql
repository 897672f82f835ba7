-- Top-K stage as a plan (engine.url = df://...): each user's exact top-K of the staged item
-- vectors, the sparse adjustments (exclusions, the repeat and neighbour terms) applied inside the
-- kernel.
-- Inputs: engine_queries(row, query, adjusted, adjustment);
-- $items is the URL of the staged item vectors, read once per executor process.
SELECT row, recjob_topk(query, adjusted, adjustment, $items, $k, $block_users, $block_items) AS hits
FROM engine_queries
