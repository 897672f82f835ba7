//! Peak resident memory of this process so far (`VmHWM` of `/proc/self/status`), read at the end
//! of each stage: the stage where the figure rises is the one that set the peak. `None` where
//! the platform does not report it (the manifest then records no memory figures). The mark is
//! never reset, so `getrusage`, `time -v` and schedulers still see the true peak.

/// Peak resident bytes of this process since it started.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Hand the memory the allocator holds free back to the system. glibc keeps what a stage freed
/// (DataFusion's batches, the ALS buffers) in its heaps, still resident, where the next stage's
/// different-sized blocks often cannot reuse it; called at the end of every stage, so each
/// stage's peak is what it holds itself.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heaps; no live block moves.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_peak_covers_what_was_touched() {
        let before = peak_rss().expect("Linux has /proc/self/status");
        let block = vec![1u8; 256 << 20];
        std::hint::black_box(&block);
        let after = peak_rss().unwrap();
        assert!(
            after >= 256 << 20,
            "peak {after} below the 256 MiB just touched"
        );
        assert!(after >= before);
        drop(block);
    }
}
