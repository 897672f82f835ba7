//! SQL functions of every recjob session, the analyst's included.
//!
//! `dot(a, b)`: the inner product of two embeddings (`fixed_size_list<float32>` or
//! `list<float32>`), summed in f64 in a fixed order exactly like the published scores, so an
//! analyst can reproduce any score:
//! `SELECT dot(u.embedding, i.embedding) FROM user_embeddings u, item_vectors i WHERE ...`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float32Array};
use arrow::datatypes::{DataType, Float32Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::domain::dot;

/// `dot(a, b)` (module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Dot {
    signature: Signature,
}

impl Dot {
    /// The function, to register in a session.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(Dot {
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

/// Row `r` of a list-typed embedding column as f32 values (`None` when null).
fn row(array: &ArrayRef, r: usize) -> Result<Option<Vec<f32>>> {
    if array.is_null(r) {
        return Ok(None);
    }
    let values = match array.data_type() {
        DataType::FixedSizeList(_, _) => array.as_fixed_size_list().value(r),
        DataType::List(_) => array.as_list::<i32>().value(r),
        DataType::LargeList(_) => array.as_list::<i64>().value(r),
        other => return exec_err!("dot: expected an embedding (list of float), found {other}"),
    };
    let values = arrow::compute::cast(&values, &DataType::Float32)?;
    Ok(Some(values.as_primitive::<Float32Type>().values().to_vec()))
}

impl ScalarUDFImpl for Dot {
    fn name(&self) -> &str {
        "dot"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (a, b) = (&arrays[0], &arrays[1]);
        let mut out = Vec::with_capacity(args.number_rows);
        for r in 0..args.number_rows {
            out.push(match (row(a, r)?, row(b, r)?) {
                (Some(x), Some(y)) if x.len() == y.len() => Some(dot(&x, &y)),
                (Some(x), Some(y)) => {
                    return exec_err!("dot: dimensions {} and {} differ", x.len(), y.len());
                }
                _ => None,
            });
        }
        Ok(ColumnarValue::Array(Arc::new(Float32Array::from(out))))
    }
}
