//! Column contracts: the Arrow types a contract allows for a column, checked on a file's schema
//! before its data is read, with messages that name the table, partition, file and column.

use arrow::datatypes::{DataType, Schema};

use crate::error::{Error, Result};

/// What a contract allows for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string or an integer (ids).
    Id,
    /// A string (plain, large, view or dictionary-encoded).
    String,
    /// A timestamp of any unit.
    Timestamp,
    /// Any number.
    Numeric,
    /// A boolean.
    Boolean,
    /// A string or a number (text rendered from it).
    Text,
}

impl Kind {
    /// Does `t` satisfy the contract?
    pub fn accepts(self, t: &DataType) -> bool {
        match self {
            Kind::Id => is_string(t) || t.is_integer(),
            Kind::String => is_string(t),
            Kind::Timestamp => matches!(t, DataType::Timestamp(_, _)),
            Kind::Numeric => t.is_numeric(),
            Kind::Boolean => t == &DataType::Boolean,
            Kind::Text => is_string(t) || t.is_numeric(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Id => "a string or integer",
            Kind::String => "a string",
            Kind::Timestamp => "a timestamp",
            Kind::Numeric => "numeric",
            Kind::Boolean => "a boolean",
            Kind::Text => "a string or number",
        }
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_string(v))
}

/// A column of a file: `at(column)` names table, partition, file and column in messages.
pub struct Columns<'a, F: Fn(&str) -> String> {
    /// The file's schema.
    pub schema: &'a Schema,
    /// Describes where a column is (`table behavior, partition dt=..., file ..., column x`).
    pub at: F,
}

impl<F: Fn(&str) -> String> Columns<'_, F> {
    /// The column must exist and satisfy `kind`.
    pub fn require(&self, column: &str, kind: Kind) -> Result<()> {
        match self.optional(column, kind, "")? {
            true => Ok(()),
            false => Err(Error::Input(format!(
                "{}: required column is missing",
                (self.at)(column)
            ))),
        }
    }

    /// When the column exists it must satisfy `kind`; returns whether it exists. `role` says
    /// what the column is for in the message (`"the category column "`), or is empty.
    pub fn optional(&self, column: &str, kind: Kind, role: &str) -> Result<bool> {
        match self.schema.field_with_name(column) {
            Err(_) => Ok(false),
            Ok(f) if !kind.accepts(f.data_type()) => Err(Error::Input(format!(
                "{}: {role}must be {}, found {}",
                (self.at)(column),
                kind.describe(),
                f.data_type()
            ))),
            Ok(_) => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, TimeUnit};

    #[test]
    fn contracts_name_the_column_and_the_type_found() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Utf8, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]);
        let cols = Columns {
            schema: &schema,
            at: |c: &str| format!("table x, column {c}"),
        };
        cols.require("id", Kind::Id).unwrap();
        cols.require("t", Kind::Timestamp).unwrap();
        let e = cols.require("ts", Kind::Timestamp).unwrap_err().to_string();
        assert!(
            e.contains("column ts: must be a timestamp, found Utf8"),
            "{e}"
        );
        let e = cols.require("nope", Kind::Id).unwrap_err().to_string();
        assert!(e.contains("column nope: required column is missing"), "{e}");
        assert!(!cols.optional("nope", Kind::Boolean, "").unwrap());
        let e = cols
            .optional("id", Kind::String, "the category column ")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("the category column must be a string"),
            "{e}"
        );
    }
}
