//! The machine's measured float32 GEMM peak through the `gemm` crate (the kernel recjob's
//! top-K and candle use): square products on every rayon thread, best of several runs.
//! Used by `make bench-topk` to report the kernel's fraction of peak.
//!
//! cargo run --example gemm_peak [N] [REPEATS]

#![allow(clippy::print_stdout)] // a measuring tool: its result is its output

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2048);
    let repeats: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let b = a.clone();
    let mut c = vec![0f32; n * n];
    let threads = rayon::current_num_threads();
    let mut best = f64::MAX;
    for _ in 0..repeats {
        let t = std::time::Instant::now();
        // SAFETY: the three buffers are n x n, row-major, with the strides given.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(threads),
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let gflops = 2.0 * (n as f64).powi(3) / best / 1e9;
    println!(
        "{{\"n\": {n}, \"threads\": {threads}, \"seconds\": {best:.4}, \"gflops\": {gflops:.1}}}"
    );
}
