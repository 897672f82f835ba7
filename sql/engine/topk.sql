-- Top-K stage as a plan (engine.url = df://...): each user's exact top-K of the staged item
-- vectors, exclusions applied inside the kernel. Inputs: engine_queries(row, query, excluded);
-- $items is the URL of the staged item vectors, read once per executor process.
SELECT row, recjob_topk(query, excluded, $items, $k, $block_users, $block_items) AS hits
FROM engine_queries
