//! GEMM: single precision for the encoder's dense layers and the top-K kernel, double precision
//! (GEMM and the symmetric rank-k update SYRK) for the Gram matrices and rank-n updates of
//! implicit ALS (`kernels/als.rs`).
//!
//! OpenBLAS when the machine has it (loaded at run time, so it is no build dependency: Debian's
//! `libopenblas0-pthread`), else the `gemm` crate, about 4x slower on one thread
//! (BENCHMARKS.md "Embedding vs sentence-transformers"). Every call is single-threaded: callers parallelise over
//! batches and blocks, so a result never depends on the thread count.
//!
//! `RECJOB_BLAS` chooses: unset or `auto` (OpenBLAS if found), `gemm` (always the `gemm` crate),
//! or the path of a CBLAS library to load.
//!
//! OpenBLAS picks its kernels by the CPU's model number and falls back to its slowest generic
//! ones (`Prescott`, SSE3) on a model it does not know, such as a virtual "Intel Xeon Processor"
//! with AVX-512: the encoder then ran 3x slower than on OpenBLAS's AVX-512 kernels. So
//! [`select_openblas_kernels`] names the kernels by instruction set instead, before OpenBLAS
//! loads, unless the operator set `OPENBLAS_CORETYPE`.

use std::ffi::{c_float, c_int};
use std::sync::OnceLock;

/// `cblas_sgemm`'s (`T = f32`) and `cblas_dgemm`'s (`T = f64`) signature (32-bit integers, as in
/// Debian's `libopenblas0`).
type CblasGemm<T> = unsafe extern "C" fn(
    order: c_int,
    trans_a: c_int,
    trans_b: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: T,
    a: *const T,
    lda: c_int,
    b: *const T,
    ldb: c_int,
    beta: T,
    c: *mut T,
    ldc: c_int,
);
type CblasSgemm = CblasGemm<c_float>;
type CblasDgemm = CblasGemm<f64>;

/// The element types GEMM runs on.
trait Element: Copy + PartialEq + 'static {
    const ZERO: Self;
    const ONE: Self;
}
impl Element for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
}
impl Element for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

/// `cblas_dsyrk`'s signature.
type CblasDsyrk = unsafe extern "C" fn(
    order: c_int,
    uplo: c_int,
    trans: c_int,
    n: c_int,
    k: c_int,
    alpha: f64,
    a: *const f64,
    lda: c_int,
    beta: f64,
    c: *mut f64,
    ldc: c_int,
);

/// LAPACK's `dpotrf_` (Fortran calling convention: every argument by reference, then the hidden
/// length of the character argument).
type Dpotrf = unsafe extern "C" fn(
    uplo: *const std::ffi::c_char,
    n: *const c_int,
    a: *mut f64,
    lda: *const c_int,
    info: *mut c_int,
    uplo_len: usize,
);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;
const UPPER: c_int = 121;

/// Library names tried by `auto`, in order.
const OPENBLAS: [&str; 2] = ["libopenblas.so.0", "libopenblas.so"];

struct Blas {
    /// Kept loaded for the life of the process; `sgemm` points into it.
    _lib: Option<libloading::Library>,
    sgemm: Option<CblasSgemm>,
    /// `None` with a library that has `cblas_sgemm` but no `cblas_dgemm`: the `gemm` crate.
    dgemm: Option<CblasDgemm>,
    /// `None`: [`dsyrk`] runs [`dgemm`].
    dsyrk: Option<CblasDsyrk>,
    /// `None`: [`cholesky`] answers that the caller factors itself.
    dpotrf: Option<Dpotrf>,
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
            dgemm: None,
            dsyrk: None,
            dpotrf: None,
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
        let dgemm = lib.get::<CblasDgemm>(b"cblas_dgemm\0").ok().map(|f| *f);
        let dsyrk = lib.get::<CblasDsyrk>(b"cblas_dsyrk\0").ok().map(|f| *f);
        let dpotrf = lib.get::<Dpotrf>(b"dpotrf_\0").ok().map(|f| *f);
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
            dgemm,
            dsyrk,
            dpotrf,
            name,
        })
    }
}

/// OpenBLAS's kernel family for this CPU's instruction set: `SkylakeX` (AVX-512 F, CD, BW, DQ,
/// VL), `Haswell` (AVX2 and FMA), or `None` (leave it to OpenBLAS).
pub fn openblas_kernels_for_cpu() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f")
            && has!("avx512cd")
            && has!("avx512bw")
            && has!("avx512dq")
            && has!("avx512vl")
        {
            return Some("SkylakeX");
        }
        if has!("avx2") && has!("fma") {
            return Some("Haswell");
        }
    }
    None
}

/// Set `OPENBLAS_CORETYPE` (read once, when OpenBLAS loads) to [`openblas_kernels_for_cpu`]
/// unless it is set. Call it first in `main`, while the process has a single thread.
pub fn select_openblas_kernels() {
    if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
        return;
    }
    if let Some(kernels) = openblas_kernels_for_cpu() {
        // SAFETY: `main` calls this before it starts any thread, so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("OPENBLAS_CORETYPE", kernels) }
    }
}

/// Which implementation runs [`sgemm`], for logs and manifests.
pub fn backend() -> &'static str {
    &blas().name
}

/// The fix named when the slow fallback runs.
pub const INSTALL_OPENBLAS: &str = "apt-get install libopenblas0-pthread";

/// Warn (once per call: at the start of a run or an embedding) when GEMM runs on the `gemm`
/// crate, the slow fallback, naming the command that installs OpenBLAS.
pub fn warn_if_fallback() {
    if blas().sgemm.is_none() {
        let why = match std::env::var("RECJOB_BLAS").unwrap_or_default().as_str() {
            "gemm" => "RECJOB_BLAS=gemm chose it",
            _ => "OpenBLAS was not found",
        };
        tracing::warn!(
            blas = backend(),
            fix = INSTALL_OPENBLAS,
            "slow GEMM fallback: {why}; the encoder runs about 2x slower and ALS and top-K slower too; \
             on Debian/Ubuntu `{INSTALL_OPENBLAS}` fixes it"
        );
    }
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
    check_operand("a", a.len(), lda, (m, k));
    check_operand("b", b.len(), ldb, stored(k, n, b_transposed));
    check_operand("c", c.len(), ldc, (m, n));
    gemm_on(
        blas().sgemm,
        (m, n, k),
        (a, lda, false),
        (b, ldb, b_transposed),
        c,
        ldc,
        beta,
    );
}

/// [`sgemm`] in double precision, `cblas_dgemm` or the `gemm` crate, one thread: `c = beta c +
/// op(a) op(b)`, row-major, `op(a)` `m x k` (`a` stored `k x m` when `a_transposed`), `op(b)`
/// `k x n` (`b` stored `n x k` when `b_transposed`), `c` `m x n`.
#[allow(clippy::too_many_arguments)]
pub fn dgemm(
    m: usize,
    n: usize,
    k: usize,
    (a, lda, a_transposed): (&[f64], usize, bool),
    (b, ldb, b_transposed): (&[f64], usize, bool),
    c: &mut [f64],
    ldc: usize,
    beta: f64,
) {
    if m == 0 || n == 0 {
        return;
    }
    check_operand("a", a.len(), lda, stored(m, k, a_transposed));
    check_operand("b", b.len(), ldb, stored(k, n, b_transposed));
    check_operand("c", c.len(), ldc, (m, n));
    gemm_on(
        blas().dgemm,
        (m, n, k),
        (a, lda, a_transposed),
        (b, ldb, b_transposed),
        c,
        ldc,
        beta,
    );
}

/// The upper triangle of `c = beta c + op(a) op(a)'`, row-major, `op(a)` `n x k` (`a` stored
/// `k x n` when `a_transposed`), `c` `n x n`: `cblas_dsyrk`, one thread, or [`dgemm`] (which also
/// writes the lower triangle) without it.
pub fn dsyrk(
    n: usize,
    k: usize,
    (a, lda, a_transposed): (&[f64], usize, bool),
    c: &mut [f64],
    ldc: usize,
    beta: f64,
) {
    if n == 0 {
        return;
    }
    check_operand("a", a.len(), lda, stored(n, k, a_transposed));
    check_operand("c", c.len(), ldc, (n, n));
    dsyrk_on(blas(), n, k, (a, lda, a_transposed), c, ldc, beta);
}

/// [`dsyrk`] on a given library; the caller has checked the shapes.
fn dsyrk_on(
    blas: &Blas,
    n: usize,
    k: usize,
    (a, lda, a_transposed): (&[f64], usize, bool),
    c: &mut [f64],
    ldc: usize,
    beta: f64,
) {
    let Some(f) = blas.dsyrk else {
        let (ops_a, ops_b) = ((a, lda, a_transposed), (a, lda, !a_transposed));
        return gemm_on(blas.dgemm, (n, n, k), ops_a, ops_b, c, ldc, beta);
    };
    let int = |v: usize| c_int::try_from(v).expect("matrix dimension within i32");
    // SAFETY: `check_operand` keeps every access within the slices.
    unsafe {
        f(
            ROW_MAJOR,
            UPPER,
            if a_transposed { TRANS } else { NO_TRANS },
            int(n),
            int(k),
            1.0,
            a.as_ptr(),
            int(lda),
            beta,
            c.as_mut_ptr(),
            int(ldc),
        );
    }
}

/// LAPACK's Cholesky factorisation (`dpotrf`, one thread) in place: the upper triangle of the
/// row-major symmetric `a` (`n x n`, row stride `lda`) becomes U with a = U'U; the strict lower
/// triangle is neither read nor written. `Some(false)` when `a` is not numerically positive
/// definite (its upper triangle is then partly overwritten), `None` when the library has no
/// LAPACK (the `gemm` crate): the caller factors `a` itself.
pub fn cholesky(n: usize, a: &mut [f64], lda: usize) -> Option<bool> {
    cholesky_on(blas(), n, a, lda)
}

fn cholesky_on(blas: &Blas, n: usize, a: &mut [f64], lda: usize) -> Option<bool> {
    let f = blas.dpotrf?;
    if n == 0 {
        return Some(true);
    }
    check_operand("a", a.len(), lda, (n, n));
    let int = |v: usize| c_int::try_from(v).expect("matrix dimension within i32");
    let (n, lda, mut info) = (int(n), int(lda), 0 as c_int);
    // Row-major upper is column-major lower: LAPACK's "L".
    // SAFETY: `check_operand` keeps the n x n matrix within `a`; the scalars outlive the call.
    unsafe { f(c"L".as_ptr(), &n, a.as_mut_ptr(), &lda, &mut info, 1) };
    Some(info == 0)
}

/// Panics unless a row-major operand of `rows x cols` with row stride `ld` lies within its
/// `len` elements, so that the unsafe calls below stay within the slices.
fn check_operand(name: &str, len: usize, ld: usize, (rows, cols): (usize, usize)) {
    assert!(
        ld >= cols,
        "gemm: the stride of {name} is below its width: this is a bug"
    );
    assert!(
        rows == 0 || cols == 0 || len > (rows - 1) * ld + cols - 1,
        "gemm: {name} is shorter than its shape: this is a bug"
    );
}

/// The stored shape of an operand whose product shape is `rows x cols`.
fn stored(rows: usize, cols: usize, transposed: bool) -> (usize, usize) {
    if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    }
}

/// [`sgemm`] or [`dgemm`] on a given CBLAS (`None`: the `gemm` crate); the caller has checked
/// the shapes.
fn gemm_on<T: Element>(
    cblas: Option<CblasGemm<T>>,
    (m, n, k): (usize, usize, usize),
    (a, lda, a_transposed): (&[T], usize, bool),
    (b, ldb, b_transposed): (&[T], usize, bool),
    c: &mut [T],
    ldc: usize,
    beta: T,
) {
    let trans = |t: bool| if t { TRANS } else { NO_TRANS };
    if let Some(f) = cblas {
        let int = |v: usize| c_int::try_from(v).expect("matrix dimension within i32");
        // SAFETY: `check_operand` keeps every access within the slices.
        unsafe {
            f(
                ROW_MAJOR,
                trans(a_transposed),
                trans(b_transposed),
                int(m),
                int(n),
                int(k),
                T::ONE,
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
    // The gemm crate takes (column stride, row stride) pairs.
    let strides = |ld: usize, t: bool| {
        if t {
            (ld as isize, 1)
        } else {
            (1, ld as isize)
        }
    };
    let ((a_cs, a_rs), (b_cs, b_rs)) = (strides(lda, a_transposed), strides(ldb, b_transposed));
    // SAFETY: as above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            beta != T::ZERO,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            T::ONE,
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
        let fallback = Blas {
            _lib: None,
            sgemm: None,
            dgemm: None,
            dsyrk: None,
            dpotrf: None,
            name: "gemm crate".into(),
        };
        let mut backends = vec![&fallback];
        if let Some(blas) = &openblas {
            assert!(
                blas.dgemm.is_some() && blas.dsyrk.is_some() && blas.dpotrf.is_some(),
                "{}: no cblas_dgemm, cblas_dsyrk or dpotrf_",
                blas.name
            );
            check_cholesky(blas);
            backends.push(blas);
        }
        for blas in backends {
            naive_check(&blas.name, blas.sgemm);
            naive_check_f64(&blas.name, blas.dgemm);
            naive_check_syrk(blas);
        }
    }

    /// `dpotrf` through [`cholesky_on`]: U'U gives back the matrix, the lower triangle is left
    /// alone, and a matrix that is not positive definite is refused.
    fn check_cholesky(blas: &Blas) {
        let n = 9;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = 1.0 / (1.0 + i.abs_diff(j) as f64) + if i == j { 2.0 } else { 0.0 };
            }
        }
        let mut u = a.clone();
        for i in 0..n {
            for j in 0..i {
                u[i * n + j] = -7.0;
            }
        }
        assert_eq!(cholesky_on(blas, n, &mut u, n), Some(true));
        for i in 0..n {
            for j in 0..n {
                if j < i {
                    assert_eq!(u[i * n + j], -7.0, "lower triangle written");
                    continue;
                }
                let got: f64 = (0..=i).map(|k| u[k * n + i] * u[k * n + j]).sum();
                assert!((got - a[i * n + j]).abs() < 1e-12, "U'U [{i}][{j}]: {got}");
            }
        }
        let mut not_pd = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(cholesky_on(blas, 2, &mut not_pd, 2), Some(false));
    }

    /// `dsyrk`'s upper triangle (both layouts of `a`) against a double loop.
    fn naive_check_syrk(blas: &Blas) {
        let (n, k) = (21, 137);
        let a: Vec<f64> = (0..n * k)
            .map(|i| ((i * 7) % 17) as f64 / 5.0 - 1.5)
            .collect();
        let at: Vec<f64> = (0..k * n).map(|i| a[(i % n) * k + i / n]).collect();
        for (transposed, am, lda) in [(false, &a, k), (true, &at, n)] {
            for beta in [0.0, 1.0] {
                let mut c: Vec<f64> = (0..n * n).map(|i| i as f64 / 10.0).collect();
                let before = c.clone();
                dsyrk_on(
                    blas,
                    n,
                    k,
                    (am.as_slice(), lda, transposed),
                    &mut c,
                    n,
                    beta,
                );
                for i in 0..n {
                    for j in i..n {
                        let want: f64 = (0..k).map(|p| a[i * k + p] * a[j * k + p]).sum::<f64>()
                            + beta * before[i * n + j];
                        let got = c[i * n + j];
                        assert!(
                            (got - want).abs() < 1e-12 * (1.0 + want.abs()),
                            "{} (dsyrk, {transposed}): c[{i}][{j}] = {got}, want {want}",
                            blas.name
                        );
                    }
                }
            }
        }
    }

    /// The double-precision path against a triple loop, every layout: exact to f64 rounding.
    fn naive_check_f64(name: &str, cblas: Option<CblasDgemm>) {
        let (m, n, k) = (19, 23, 131);
        let a: Vec<f64> = (0..m * k)
            .map(|i| ((i * 7) % 13) as f64 / 3.0 - 2.0)
            .collect();
        let b: Vec<f64> = (0..k * n)
            .map(|i| ((i * 5) % 11) as f64 / 7.0 - 0.7)
            .collect();
        let at: Vec<f64> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for (ta, am, lda) in [(false, &a, k), (true, &at, m)] {
            for (tb, bm, ldb) in [(false, &b, n), (true, &bt, k)] {
                for beta in [0.0, 1.0] {
                    let mut c: Vec<f64> = (0..m * n).map(|i| i as f64 / 10.0).collect();
                    let before = c.clone();
                    let (ops_a, ops_b) = ((am.as_slice(), lda, ta), (bm.as_slice(), ldb, tb));
                    gemm_on(cblas, (m, n, k), ops_a, ops_b, &mut c, n, beta);
                    for i in 0..m {
                        for j in 0..n {
                            let want: f64 =
                                (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f64>()
                                    + beta * before[i * n + j];
                            let got = c[i * n + j];
                            assert!(
                                (got - want).abs() < 1e-12 * (1.0 + want.abs()),
                                "{name} (f64, {ta} {tb}): c[{i}][{j}] = {got}, want {want}"
                            );
                        }
                    }
                }
            }
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
                gemm_on(
                    cblas,
                    (m, n, k),
                    (&a, k, false),
                    (bm, ldb, transposed),
                    &mut c,
                    n,
                    beta,
                );
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
