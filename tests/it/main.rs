//! Integration tests: one binary (`autotests = false`). Tests over real data need the models
//! (`make model`, `make model-multilingual`) and `../shared/data`; they fail with a message
//! saying so, never skip.

mod analyst;
mod architecture;
mod bad_input;
mod cluster;
mod commit;
mod common;
mod embedding;
mod engine;
mod metrics;
mod multilingual;
mod nightly;
mod operations;
mod quality;
mod repeat;
mod report;
mod s3;
mod topk_cli;
