//! Top-K where `topk.device` says: the CPU kernel ([`super::top_k`]), or blockwise on a GPU
//! through candle ([`top_k_candle`]).
//!
//! On the device each tile of `block_users x block_items` scores is one matrix product; the
//! users' sparse terms are added to it in place (a scatter of `-inf` exclusions and repeat
//! terms), each row's best `keep` (K plus a margin) are selected by a device sort, and merged with
//! the best of the earlier item blocks, so only `block_users x keep` candidates per user block
//! ever leave the device. The host then re-scores the candidates exactly
//! ([`super::topk::finish`], the CPU kernel's last step), so the published lists and scores equal
//! the CPU kernel's up to exact ties at the margin's edge. Device memory is the items (`n x dim`)
//! plus one tile. The same code runs on candle's CPU device in the tests.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::encoder::select_device;
use super::topk::{Adjustments, Hit, TopkParams, finish, keep, top_k};
use crate::error::{Error, Result};

/// The longest row the device sort takes: CUDA's arg-sort holds a row, padded to a power of
/// two, in 48 KB of shared memory. Item blocks are cut to this.
pub const MAX_BLOCK_ITEMS: usize = 8192;

/// Users per block on a GPU. With [`MAX_BLOCK_ITEMS`] a tile is 256 MB of scores plus as much
/// of sort indices: large enough to keep a GPU busy, small beside its memory.
const GPU_BLOCK_USERS: usize = 8192;

/// Every user's top-K (`users` is `n x dim`, `items` sorted by id, both row-major) on the
/// device `params.device` selects: the CPU kernel for `cpu`, and for `auto` without a GPU;
/// else [`top_k_candle`] on GPU-sized blocks. `sink(first_user, lists)` receives consecutive
/// chunks of users in order.
pub fn top_k_on(
    users: &[f32],
    items: &[f32],
    dim: usize,
    params: &TopkParams,
    adjustments: &Adjustments,
    sink: &mut dyn FnMut(usize, Vec<Vec<Hit>>) -> Result<()>,
) -> Result<()> {
    match select_device(params.device, "topk.device")? {
        Device::Cpu => top_k(users, items, dim, params, adjustments, sink),
        gpu => {
            let blocks = TopkParams {
                block_users: GPU_BLOCK_USERS,
                block_items: MAX_BLOCK_ITEMS,
                ..*params
            };
            top_k_candle(&gpu, users, items, dim, &blocks, adjustments, sink)
        }
    }
}

/// [`top_k_on`]'s device path on any candle `device`, with `params`' blocks (item blocks cut
/// to [`MAX_BLOCK_ITEMS`]). One sink call per user block.
pub fn top_k_candle(
    device: &Device,
    users: &[f32],
    items: &[f32],
    dim: usize,
    params: &TopkParams,
    adjustments: &Adjustments,
    sink: &mut dyn FnMut(usize, Vec<Vec<Hit>>) -> Result<()>,
) -> Result<()> {
    assert!(
        dim > 0 && users.len().is_multiple_of(dim) && items.len().is_multiple_of(dim),
        "matrix shapes: this is a bug"
    );
    let (n_users, n_items) = (users.len() / dim, items.len() / dim);
    let failed = |e: candle_core::Error| Error::infra(format!("top-K on {device:?}"), e);
    let on_device = Tensor::from_slice(items, (n_items, dim), device).map_err(failed)?;
    let tile = Tile {
        device,
        items: &on_device,
        n_items,
        dim,
        block_items: params.block_items.clamp(1, MAX_BLOCK_ITEMS),
        keep: keep(params.k, n_items),
        adjustments,
    };
    let block_users = params.block_users.max(1);
    let progress =
        crate::progress::Progress::new("top-K", "user blocks", n_users.div_ceil(block_users));
    for u0 in (0..n_users).step_by(block_users) {
        let u1 = (u0 + block_users).min(n_users);
        let block = &users[u0 * dim..u1 * dim];
        let (candidates, width) = tile.candidates(block, u0).map_err(failed)?;
        let lists = (u0..u1)
            .into_par_iter()
            .map(|u| {
                let mine = &candidates[(u - u0) * width..(u - u0 + 1) * width];
                let user = &users[u * dim..(u + 1) * dim];
                finish(
                    user,
                    u,
                    mine.iter().copied(),
                    items,
                    dim,
                    adjustments,
                    params.k,
                )
            })
            .collect();
        sink(u0, lists)?;
        progress.inc(1);
    }
    Ok(())
}

/// What every user block is scored against.
struct Tile<'a> {
    device: &'a Device,
    /// `n_items x dim` on the device.
    items: &'a Tensor,
    n_items: usize,
    dim: usize,
    block_items: usize,
    keep: usize,
    adjustments: &'a Adjustments,
}

impl Tile<'_> {
    /// The best `keep` item rows of each user of `block` (users from row `u0`) by adjusted
    /// score, row-major, and their number per user (0 without items).
    fn candidates(&self, block: &[f32], u0: usize) -> candle_core::Result<(Vec<u32>, usize)> {
        let bu = block.len() / self.dim;
        let users = Tensor::from_slice(block, (bu, self.dim), self.device)?;
        let mut best: Option<(Tensor, Tensor)> = None;
        for i0 in (0..self.n_items).step_by(self.block_items) {
            let bi = self.block_items.min(self.n_items - i0);
            let mut scores = users.matmul(&self.items.narrow(0, i0, bi)?.t()?)?;
            if let Some((at, values, m)) = terms(self.adjustments, u0, bu, i0, bi) {
                let at = Tensor::from_vec(at, (bu, m), self.device)?;
                let values = Tensor::from_vec(values, (bu, m), self.device)?;
                scores = scores.scatter_add(&at, &values, 1)?;
            }
            let (top, at) = best_of(&scores, self.keep)?;
            let rows = at.broadcast_add(&Tensor::new(i0 as u32, self.device)?)?;
            best = Some(match best {
                None => (top, rows),
                Some((kept, kept_rows)) => {
                    let scores = Tensor::cat(&[&kept, &top], 1)?;
                    let (top, at) = best_of(&scores, self.keep)?;
                    (top, Tensor::cat(&[&kept_rows, &rows], 1)?.gather(&at, 1)?)
                }
            });
        }
        match best {
            Some((_, rows)) => Ok((rows.flatten_all()?.to_vec1::<u32>()?, rows.dim(1)?)),
            None => Ok((Vec::new(), 0)),
        }
    }
}

/// Each row's best `keep` scores (at most the row's length) and their columns, best first.
fn best_of(scores: &Tensor, keep: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let c = keep.min(scores.dim(1)?);
    let at = scores
        .arg_sort_last_dim(false)?
        .narrow(1, 0, c)?
        .contiguous()?;
    Ok((scores.gather(&at, 1)?, at))
}

/// The terms of users `u0..u0 + bu` on items `i0..i0 + bi` as a `bu x m` scatter (columns in
/// the tile, values; short rows padded with `+0` at column 0), `m` the most any user has; `None`
/// when no user has any.
fn terms(
    adjustments: &Adjustments,
    u0: usize,
    bu: usize,
    i0: usize,
    bi: usize,
) -> Option<(Vec<u32>, Vec<f32>, usize)> {
    let within = |u: usize| {
        let (items, values) = adjustments.of(u);
        let lo = items.partition_point(|&x| (x as usize) < i0);
        let hi = items.partition_point(|&x| (x as usize) < i0 + bi);
        (&items[lo..hi], &values[lo..hi])
    };
    let m = (u0..u0 + bu).map(|u| within(u).0.len()).max()?;
    if m == 0 {
        return None;
    }
    let (mut at, mut values) = (vec![0u32; bu * m], vec![0f32; bu * m]);
    for r in 0..bu {
        let (items, terms) = within(u0 + r);
        for (j, (&x, &v)) in items.iter().zip(terms).enumerate() {
            at[r * m + j] = x - i0 as u32;
            values[r * m + j] = v;
        }
    }
    Some((at, values, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeviceChoice;
    use crate::kernels::top_k_all;
    use crate::kernels::topk::tests::{random_adjustments, random_unit, reference, same};
    use proptest::prelude::*;

    fn on_cpu_device(
        users: &[f32],
        items: &[f32],
        dim: usize,
        params: &TopkParams,
        adjustments: &Adjustments,
    ) -> Vec<Vec<Hit>> {
        let mut out = Vec::new();
        let mut collect = |first: usize, lists: Vec<Vec<Hit>>| {
            assert_eq!(first, out.len());
            out.extend(lists);
            Ok(())
        };
        top_k_candle(
            &Device::Cpu,
            users,
            items,
            dim,
            params,
            adjustments,
            &mut collect,
        )
        .unwrap();
        out
    }

    fn params(k: usize, block_users: usize, block_items: usize) -> TopkParams {
        TopkParams {
            k,
            block_users,
            block_items,
            device: DeviceChoice::Cpu,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn the_device_path_equals_the_cpu_kernel_and_brute_force(
            n_users in 1usize..30, n_items in 1usize..100, dim in 1usize..33, k in 1usize..25,
            bu in 1usize..13, bi in 1usize..60, seed in 0u64..1000, ex_share in 0.0f64..1.0,
            boost_share in 0.0f64..0.3,
        ) {
            let users = random_unit(n_users, dim, seed);
            let items = random_unit(n_items, dim, seed + 7);
            let ex = random_adjustments(n_users, n_items, seed, ex_share, boost_share);
            let p = params(k, bu, bi);
            let got = on_cpu_device(&users, &items, dim, &p, &ex);
            prop_assert!(got[0].is_empty());
            same(&got, &reference(&users, &items, dim, k, &ex));
            prop_assert_eq!(got, top_k_all(&users, &items, dim, &p, &ex));
        }
    }

    #[test]
    fn ties_and_blocks_give_the_cpu_kernels_lists() {
        // Five copies of ten vectors: exact ties everywhere, broken by the lower item row.
        let base = random_unit(10, 24, 3);
        let items: Vec<f32> = (0..5).flat_map(|_| base.clone()).collect();
        let users = random_unit(33, 24, 9);
        let ex = Adjustments::from_entries(
            33,
            vec![
                (1, 0, f32::NEG_INFINITY),
                (2, 49, f32::NEG_INFINITY),
                (3, 7, 0.25),
                (3, 17, 0.25),
            ],
        );
        let want = reference(&users, &items, 24, 12, &ex);
        for (bu, bi) in [(1, 1), (4, 7), (33, 50), (8, 100_000)] {
            same(
                &on_cpu_device(&users, &items, 24, &params(12, bu, bi), &ex),
                &want,
            );
        }
        // More than the items asked for, and no items at all.
        let all = on_cpu_device(&users, &items, 24, &params(80, 5, 16), &ex);
        assert!(
            all.iter()
                .enumerate()
                .all(|(u, l)| l.len() == 50 - usize::from(u == 1 || u == 2))
        );
        let none = on_cpu_device(
            &users,
            &[],
            24,
            &params(5, 8, 8),
            &Adjustments::exclusions(33, vec![]),
        );
        assert!(none.len() == 33 && none.iter().all(Vec::is_empty));
    }

    #[test]
    fn the_selected_device_runs_the_cpu_kernel_or_names_the_setting() {
        let users = random_unit(7, 8, 1);
        let items = random_unit(20, 8, 2);
        let ex = Adjustments::exclusions(7, vec![(0, 3)]);
        let mut out = Vec::new();
        top_k_on(&users, &items, 8, &params(4, 2, 6), &ex, &mut |_, l| {
            out.extend(l);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, top_k_all(&users, &items, 8, &params(4, 2, 6), &ex));
        if !candle_core::utils::cuda_is_available() {
            let cuda = TopkParams {
                device: DeviceChoice::Cuda,
                ..params(4, 2, 6)
            };
            let err = top_k_on(&users, &items, 8, &cuda, &ex, &mut |_, _| Ok(())).unwrap_err();
            assert!(err.to_string().contains("topk.device = cuda"), "{err}");
        }
    }
}
