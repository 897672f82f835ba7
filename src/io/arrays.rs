//! Arrow arrays to and from Rust values.
//!
//! Embedding columns are `fixed_size_list<float32>[d]` (written by us; the child field's name is
//! never relied on when reading, since writers call it `item` or `element`) or `list<float32>`,
//! converted to and from flat row-major `f32` buffers.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type};

/// The Arrow type of an embedding column of dimension `dim`.
pub fn embedding_type(dim: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, false)),
        dim as i32,
    )
}

/// A flat `rows x dim` buffer as an embedding column.
pub fn to_arrow(flat: &[f32], dim: usize) -> ArrayRef {
    let values = Arc::new(Float32Array::from(flat.to_vec()));
    let field = Arc::new(Field::new("item", DataType::Float32, false));
    Arc::new(FixedSizeListArray::new(field, dim as i32, values, None))
}

/// Read an embedding column into a flat buffer. `Err` names the first bad row (null,
/// inconsistent dimension or non-float values).
pub fn from_arrow(array: &dyn Array) -> Result<(Vec<f32>, usize), String> {
    let rows = array.len();
    match array.data_type() {
        DataType::FixedSizeList(_, d) => {
            let list = array.as_fixed_size_list();
            if let Some(r) = (0..rows).find(|&r| list.is_null(r)) {
                return Err(format!("row {r}: null embedding"));
            }
            let dim = *d as usize;
            let values = floats(list.values().as_ref())?;
            let offset = list.offset() * dim;
            Ok((values[offset..offset + rows * dim].to_vec(), dim))
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let mut out = Vec::new();
            let mut dim = None;
            for r in 0..rows {
                if array.is_null(r) {
                    return Err(format!("row {r}: null embedding"));
                }
                let v = match array.data_type() {
                    DataType::List(_) => array.as_list::<i32>().value(r),
                    _ => array.as_list::<i64>().value(r),
                };
                let v = floats(v.as_ref())?;
                match dim {
                    None => dim = Some(v.len()),
                    Some(d) if d != v.len() => {
                        return Err(format!("row {r}: dimension {} differs from {d}", v.len()));
                    }
                    _ => {}
                }
                out.extend_from_slice(&v);
            }
            Ok((out, dim.unwrap_or(0)))
        }
        other => Err(format!(
            "expected fixed_size_list<float32> or list<float32>, found {other}"
        )),
    }
}

fn floats(values: &dyn Array) -> Result<Vec<f32>, String> {
    if values.null_count() > 0 {
        return Err("embedding has null components".into());
    }
    match values.data_type() {
        DataType::Float32 => Ok(values.as_primitive::<Float32Type>().values().to_vec()),
        DataType::Float64 => Ok(values
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .map(|v| *v as f32)
            .collect()),
        other => Err(format!("embedding values must be float32, found {other}")),
    }
}

/// An id column of a file as strings: strings and integers are accepted, nulls are not; any
/// other type is bad input naming `what` (file and column).
pub fn id_strings(array: &dyn Array, what: &str) -> crate::error::Result<Vec<String>> {
    use crate::error::Error;
    let t = array.data_type();
    let string_like = matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8));
    if !(string_like || t.is_integer()) {
        return Err(Error::Input(format!(
            "{what}: must be a string or integer, found {t}"
        )));
    }
    if array.null_count() > 0 {
        return Err(Error::Input(format!(
            "{what}: {} null values",
            array.null_count()
        )));
    }
    let cast = arrow::compute::cast(array, &DataType::Utf8)
        .map_err(|e| Error::Input(format!("{what}: {e}")))?;
    let cast = cast.as_string::<i32>();
    Ok((0..cast.len()).map(|i| cast.value(i).to_string()).collect())
}

/// An integer column of a file (ranks); any other type or a null is bad input naming `what`.
pub fn int_values(array: &dyn Array, what: &str) -> crate::error::Result<Vec<i64>> {
    use crate::error::Error;
    if !array.data_type().is_integer() {
        return Err(Error::Input(format!(
            "{what}: must be an integer, found {}",
            array.data_type()
        )));
    }
    if array.null_count() > 0 {
        return Err(Error::Input(format!(
            "{what}: {} null values",
            array.null_count()
        )));
    }
    let cast = arrow::compute::cast(array, &DataType::Int64)
        .map_err(|e| Error::Input(format!("{what}: {e}")))?;
    Ok(cast
        .as_primitive::<arrow::datatypes::Int64Type>()
        .values()
        .to_vec())
}

/// A string column of one of recjob's own batches as owned strings (nulls become empty
/// strings). Columns of input files go through [`id_strings`], which checks their type.
pub fn strings(batch: &RecordBatch, column: usize) -> Vec<String> {
    let array = arrow::compute::cast(batch.column(column), &DataType::Utf8)
        .expect("string column: this is a bug");
    let array = array.as_string::<i32>();
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                String::new()
            } else {
                array.value(i).to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ListArray;

    #[test]
    fn round_trips_fixed_and_variable_lists() {
        let flat = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let arr = to_arrow(&flat, 3);
        assert_eq!(from_arrow(arr.as_ref()).unwrap(), (flat.clone(), 3));
        assert_eq!(
            from_arrow(arr.slice(1, 1).as_ref()).unwrap(),
            (vec![4.0, 5.0, 6.0], 3)
        );
        let list = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0)]),
            Some(vec![Some(3.0), Some(4.0)]),
        ]);
        assert_eq!(from_arrow(&list).unwrap(), (vec![1.0, 2.0, 3.0, 4.0], 2));
        let ragged = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0)]),
            Some(vec![Some(3.0), Some(4.0)]),
        ]);
        assert!(from_arrow(&ragged).unwrap_err().contains("row 1"));
    }
}
