//! The kernels: the numeric work of a run, on plain slices and ids, with no storage, engine or
//! stage in sight. The sentence encoder, exact blockwise top-K, implicit ALS, low-rank EASE, item neighbours, popularity lists
//! and the SGEMM they share; top-K also blockwise on a GPU. Each is deterministic and tested against a naive reference.

mod als;
pub(crate) mod blas;
mod ease;
mod encoder;
mod neighbors;
mod popularity;
mod topk;
mod topk_device;

pub use als::{Factors, HalfSweep, Rows, als, initial_items};
pub use blas::backend as blas_backend;
pub use blas::warn_if_fallback as warn_if_slow_blas;
pub use blas::{openblas_kernels_for_cpu, select_openblas_kernels};
pub use ease::ease;
pub use encoder::{
    EmbedStats, Encoder, Pooling, SentenceEncoder, embed_texts, encode_batches, plan, select_device,
};
pub use neighbors::{Neighbors, neighbors};
pub use popularity::popularity_score;
pub use topk::{Adjustments, Hit, TopkParams, top_k, top_k_all};
pub use topk_device::{MAX_BLOCK_ITEMS, top_k_candle, top_k_on};

/// `work` run on a rayon pool of `threads` threads (the kernels' thread-count tests).
#[cfg(test)]
pub(crate) fn on_threads<T: Send>(threads: usize, work: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(work)
}
