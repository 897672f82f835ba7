//! Rows of `f32` spilled to an unnamed scratch file and read back a range of rows at a time:
//! what a run holds per user but reads only per chunk of users (the users' behavior factors,
//! 0.5 GB for a million users at 128 factors) stays on disk, not in memory. The file lives in
//! the system's temporary directory (`TMPDIR`) and is gone when the value is dropped, or when
//! the process dies.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};

/// `len` rows of `width` values each, in a scratch file.
#[derive(Debug)]
pub struct ScratchRows {
    file: File,
    width: usize,
    len: usize,
}

impl ScratchRows {
    /// Spill `values`, rows of `width` values (row-major; `width` > 0).
    pub fn write(values: &[f32], width: usize) -> Result<ScratchRows> {
        assert!(
            width > 0 && values.len().is_multiple_of(width),
            "rows of {width}"
        );
        let fail = |e| Error::infra("spilling rows to a scratch file in TMPDIR", e);
        let file = tempfile::tempfile().map_err(fail)?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        for v in values {
            out.write_all(&v.to_le_bytes()).map_err(fail)?;
        }
        out.flush().map_err(fail)?;
        drop(out);
        Ok(ScratchRows {
            file,
            width,
            len: values.len() / width,
        })
    }

    /// `len` rows of `width` zeros (`width` > 0), to fill with [`ScratchRows::put`].
    pub fn zeroed(len: usize, width: usize) -> Result<ScratchRows> {
        assert!(width > 0, "rows of {width}");
        let fail = |e| Error::infra("making a scratch file in TMPDIR", e);
        let file = tempfile::tempfile().map_err(fail)?;
        file.set_len((len * width * 4) as u64).map_err(fail)?;
        Ok(ScratchRows { file, width, len })
    }

    /// Overwrite the rows from `first` on with `values` (whole rows, row-major).
    pub fn put(&self, first: usize, values: &[f32]) -> Result<()> {
        let rows = values.len() / self.width;
        assert!(
            values.len().is_multiple_of(self.width) && first + rows <= self.len,
            "rows {first}..{} of {}",
            first + rows,
            self.len
        );
        // A MiB of bytes at a time: `values` may be a million users' factors.
        const CHUNK: usize = 1 << 18;
        let mut bytes = Vec::with_capacity(CHUNK.min(values.len()) * 4);
        for (c, part) in values.chunks(CHUNK).enumerate() {
            bytes.clear();
            bytes.extend(part.iter().flat_map(|v| v.to_le_bytes()));
            let offset = ((first * self.width + c * CHUNK) * 4) as u64;
            self.file
                .write_all_at(&bytes, offset)
                .map_err(|e| Error::infra("spilling rows to a scratch file in TMPDIR", e))?;
        }
        Ok(())
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows `range`, row-major.
    pub fn read(&self, range: Range<usize>) -> Result<Vec<f32>> {
        assert!(range.end <= self.len, "rows {range:?} of {}", self.len);
        let mut bytes = vec![0u8; range.len() * self.width * 4];
        let offset = (range.start * self.width * 4) as u64;
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|e| Error::infra("reading rows back from a scratch file", e))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_exactly_by_range() {
        let values: Vec<f32> = (0..3 * 5).map(|n| n as f32 * 0.37 - 2.0).collect();
        let rows = ScratchRows::write(&values, 3).unwrap();
        assert_eq!(rows.width(), 3);
        assert_eq!(rows.read(0..5).unwrap(), values);
        assert_eq!(rows.read(1..3).unwrap(), &values[3..9]);
        assert_eq!(rows.read(4..4).unwrap(), Vec::<f32>::new());
        let put = ScratchRows::zeroed(5, 3).unwrap();
        put.put(3, &values[9..15]).unwrap();
        put.put(0, &values[..3]).unwrap();
        let mut want = values.clone();
        want[3..9].fill(0.0);
        assert_eq!(put.read(0..5).unwrap(), want);
        let special = [f32::MIN_POSITIVE, -0.0, f32::MAX, 1e-42];
        assert_eq!(
            ScratchRows::write(&special, 2).unwrap().read(1..2).unwrap(),
            &special[2..]
        );
    }
}
