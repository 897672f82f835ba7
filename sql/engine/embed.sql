-- Embedding stage as a plan (engine.url = df://...): one row per encoder batch, planned by the
-- driver exactly as a local run plans it; recjob_embed encodes the row's texts as one batch and
-- returns their vectors concatenated (texts x dim). Inputs: engine_batches(batch, texts).
SELECT batch, recjob_embed(texts, $model_dir, $device, $model_id, $dtype) AS vectors
FROM engine_batches
