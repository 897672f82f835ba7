//! Single-precision GEMM for the encoder's dense layers and the top-K kernel.
//!
//! OpenBLAS when the machine has it (loaded at run time, so it is no build dependency: Debian's
//! `libopenblas0-pthread`), else the `gemm` crate, about 4x slower on one thread
//! (BENCHMARKS.md "Embedding vs sentence-transformers"). Every call is single-threaded: callers parallelise over
//! batches and blocks, so a result never depends on the thread count.
//!
//! `RECJOB_BLAS` chooses: unset or `auto` (OpenBLAS if found), `gemm` (always the `gemm` crate),
//! or the path of a CBLAS library to load.

use std::ffi::{c_float, c_int};
use std::sync::OnceLock;

/// `cblas_sgemm`'s signature (32-bit integers, as in Debian's `libopenblas0`).
type CblasSgemm = unsafe extern "C" fn(
    order: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: c_float,
    a: *const c_float,
    lda: c_int,
    b: *const c_float,
    ldb: c_int,
    beta: c_float,
    c: *mut c_float,
    ldc: c_int,
);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// Library names tried by `auto`, in order.
const OPENBLAS: [&str; 2] = ["libopenblas.so.0", "libopenblas.so"];

struct Blas {
    /// Kept loaded for the life of the process; `sgemm` points into it.
    _lib: Option<libloading::Library>,
    sgemm: Option<CblasSgemm>,
    name: String,
}

fn blas() -> &'static Blas {
    static BLAS: OnceLock<Blas> = OnceLock::new();
    BLAS.get_or_init(|| {
        let choice = std::env::var("RECJOB_BLAS").unwrap_or_default();
        let candidates: Vec<&str> = match choice.as_str() {
            "" | "auto" => OPENBLAS.to_vec(),
            "gemm" => Vec::new(),
            path => vec![path],
        };
        for name in candidates {
            match load(name) {
                Ok(blas) => return blas,
                Err(e) if !matches!(choice.as_str(), "" | "auto") => {
                    tracing::warn!(library = name, error = %e, "RECJOB_BLAS: cannot load it, using the gemm crate");
                }
                Err(_) => {}
            }
        }
        Blas {
            _lib: None,
            sgemm: None,
            name: "gemm crate".into(),
        }
    })
}

fn load(name: &str) -> Result<Blas, libloading::Error> {
    // SAFETY: loading a BLAS library runs its initialisers, which only set up its own state;
    // the symbols are looked up with their C signatures from cblas.h.
    unsafe {
        let lib = libloading::Library::new(name)?;
        let sgemm = *lib.get::<CblasSgemm>(b"cblas_sgemm\0")?;
        // One thread per call: recjob runs its own workers (and OpenBLAS's pool would fight them).
        if let Ok(set) = lib.get::<unsafe extern "C" fn(c_int)>(b"openblas_set_num_threads\0") {
            set(1);
        }
        let core = lib
            .get::<unsafe extern "C" fn() -> *const std::ffi::c_char>(b"openblas_get_corename\0")
            .ok()
            .map(|f| std::ffi::CStr::from_ptr(f()).to_string_lossy().into_owned());
        let name = match core {
            Some(core) => format!("{name} ({core})"),
            None => name.to_string(),
        };
        Ok(Blas {
            _lib: Some(lib),
            sgemm: Some(sgemm),
            name,
        })
    }
}

/// Which implementation runs [`sgemm`], for logs and manifests.
pub fn backend() -> &'static str {
    &blas().name
}

/// `c = beta c + a b` (or `a bᵀ` with `b_transposed`), all row-major: `a` is `m x k`, `b` is
/// `k x n` (`n x k` when transposed), `c` is `m x n`, with row strides `lda`, `ldb`, `ldc`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    b_transposed: bool,
    c: &mut [f32],
    ldc: usize,
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (b_rows, b_cols) = if b_transposed { (n, k) } else { (k, n) };
    assert!(
        lda >= k && ldb >= b_cols && ldc >= n,
        "sgemm strides: this is a bug"
    );
    assert!(
        a.len() > (m - 1) * lda + k.saturating_sub(1)
            && (b_rows == 0 || b.len() > (b_rows - 1) * ldb + b_cols.saturating_sub(1))
            && c.len() > (m - 1) * ldc + n - 1,
        "sgemm operands shorter than their shapes: this is a bug"
    );
    sgemm_on(
        blas().sgemm,
        m,
        n,
        k,
        a,
        lda,
        b,
        ldb,
        b_transposed,
        c,
        ldc,
        beta,
    );
}

/// [`sgemm`] on a given CBLAS (`None`: the `gemm` crate); the caller has checked the shapes.
#[allow(clippy::too_many_arguments)]
fn sgemm_on(
    cblas: Option<CblasSgemm>,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    b_transposed: bool,
    c: &mut [f32],
    ldc: usize,
    beta: f32,
) {
    if let Some(f) = cblas {
        let int = |v: usize| c_int::try_from(v).expect("matrix dimension within i32");
        // SAFETY: the asserts above keep every access within the slices.
        unsafe {
            f(
                ROW_MAJOR,
                NO_TRANS,
                if b_transposed { TRANS } else { NO_TRANS },
                int(m),
                int(n),
                int(k),
                1.0,
                a.as_ptr(),
                int(lda),
                b.as_ptr(),
                int(ldb),
                beta,
                c.as_mut_ptr(),
                int(ldc),
            );
        }
        return;
    }
    let (b_rs, b_cs) = if b_transposed {
        (1, ldb as isize)
    } else {
        (ldb as isize, 1)
    };
    // SAFETY: as above; the gemm crate takes (column stride, row stride) pairs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            beta != 0.0,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both backends against a triple loop in f64, both layouts of `b`, with beta 0 and 1.
    /// OpenBLAS must be there on CI (`.ci/run` installs it), so its path is always proven there.
    #[test]
    fn sgemm_matches_a_naive_product() {
        let openblas = OPENBLAS.iter().find_map(|name| load(name).ok());
        if std::env::var_os("CI").is_some() {
            assert!(openblas.is_some(), "CI must have OpenBLAS ({OPENBLAS:?})");
        }
        let mut backends = vec![("gemm crate".to_string(), None)];
        if let Some(blas) = &openblas {
            backends.push((blas.name.clone(), blas.sgemm));
        }
        for (name, cblas) in backends {
            naive_check(&name, cblas);
        }
    }

    fn naive_check(name: &str, cblas: Option<CblasSgemm>) {
        let (m, n, k) = (37, 29, 53);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5) % 11) as f32 * 0.5 - 2.0)
            .collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for (transposed, bm, ldb) in [(false, &b, n), (true, &bt, k)] {
            for beta in [0.0f32, 1.0] {
                let mut c: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
                let before = c.clone();
                sgemm_on(cblas, m, n, k, &a, k, bm, ldb, transposed, &mut c, n, beta);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                            .sum::<f64>()
                            + f64::from(beta * before[i * n + j]);
                        let got = f64::from(c[i * n + j]);
                        assert!(
                            (got - want).abs() < 1e-3,
                            "{name}: c[{i}][{j}] = {got}, want {want}"
                        );
                    }
                }
            }
        }
    }
}
