#!/usr/bin/env bash
# The newcomer's first run: the nightly job on UCI Online Retail for two consecutive nights
# (the second one evaluates the first), with the real model, on local files under out/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/debug/recjob
for date in 2011-11-29 2011-11-30; do
  "$BIN" run --config jobs/nightly.toml --date "$date" --force
done
echo
echo "Outputs: $(pwd)/out/<table>/dt=YYYY-MM-DD/part-<run_id>.parquet (the files each manifest lists), manifests in out/_manifests/"
ls out
echo
echo "Example query: metrics at K=20 for 2011-11-30, model vs popularity baseline"
echo "  $BIN sql --config jobs/nightly.toml -c \"SELECT metric, segment, value, n_users FROM metrics WHERE ...\""
"$BIN" sql --config jobs/nightly.toml -c "
    SELECT metric, segment, round(value, 4) AS value, n_users
    FROM metrics
    WHERE dt = DATE '2011-11-30' AND k = 20 AND metric IN ('recall', 'ndcg', 'catalog_coverage')
    ORDER BY metric, segment"
echo "More: sql/analyst/*.sql (recjob sql --config jobs/nightly.toml -f sql/analyst/top_items_per_day.sql)"
