//! The slice hash: where a `DISTSTYLE KEY` row lives. Stored data depends on it, so it is
//! versioned ([`SLICE_HASH_VERSION`], recorded in every table) and never changes meaning
//! within a version. It is our own function, not DataFusion's repartition hash, whose seed
//! and algorithm are an implementation detail of DataFusion.
//!
//! Version 1: values are reduced to a canonical byte form (every integer type and DATE as an
//! i64 so that `INTEGER 7` and `BIGINT 7` land together; DECIMAL as its unscaled i128; floats
//! as f64 bits with -0.0 folded into 0.0; strings as UTF-8), hashed with 64-bit FNV-1a and
//! finished with the splitmix64 mixer. NULL hashes to a fixed value.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimestampMicrosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

use crate::error::{Error, Result, sqlstate};

pub const SLICE_HASH_VERSION: u32 = 1;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const NULL_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn hash_i64(v: i64) -> u64 {
    mix(fnv1a(&v.to_le_bytes()))
}

pub fn hash_bytes(v: &[u8]) -> u64 {
    mix(fnv1a(v))
}

/// Computes the slice (`0..slices`) of every row of `column`.
pub fn slice_of_rows(column: &ArrayRef, slices: u32) -> Result<Vec<u32>> {
    let hashes = hash_column(column)?;
    let n = u64::from(slices.max(1));
    Ok(hashes.into_iter().map(|h| (h % n) as u32).collect())
}

/// The bucket (`0..buckets`) of every row for an exchange on `columns`. For one column it
/// is exactly [`slice_of_rows`], so rows redistributed on a key meet the rows a `DISTKEY`
/// on that key already placed; several columns are combined in order. Types that cannot be
/// a distribution key are hashed through their Arrow row encoding.
pub fn bucket_of_rows(columns: &[ArrayRef], buckets: u32) -> Result<Vec<u32>> {
    let rows = columns.first().map(|c| c.len()).unwrap_or(0);
    let mut acc: Option<Vec<u64>> = None;
    for col in columns {
        let h = match hash_column(col) {
            Ok(h) => h,
            Err(_) => hash_row_encoded(col)?,
        };
        acc = Some(match acc {
            None => h,
            Some(a) => a
                .into_iter()
                .zip(h)
                .map(|(x, y)| mix(x.wrapping_mul(FNV_PRIME) ^ y))
                .collect(),
        });
    }
    let n = u64::from(buckets.max(1));
    Ok(acc
        .unwrap_or_else(|| vec![0; rows])
        .into_iter()
        .map(|h| (h % n) as u32)
        .collect())
}

fn hash_row_encoded(col: &ArrayRef) -> Result<Vec<u64>> {
    use arrow::row::{RowConverter, SortField};
    let converter = RowConverter::new(vec![SortField::new(col.data_type().clone())])?;
    let rows = converter.convert_columns(std::slice::from_ref(col))?;
    Ok((0..col.len())
        .map(|i| {
            if col.is_null(i) {
                NULL_HASH
            } else {
                hash_bytes(rows.row(i).as_ref())
            }
        })
        .collect())
}

fn hash_column(col: &ArrayRef) -> Result<Vec<u64>> {
    macro_rules! ints {
        ($t:ty) => {{
            let a = col.as_primitive::<$t>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        hash_i64(a.value(i) as i64)
                    }
                })
                .collect()
        }};
    }
    let out: Vec<u64> = match col.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Date32 => ints!(Date32Type),
        DataType::Timestamp(_, _) => {
            let a = arrow::compute::cast(
                col,
                &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            )?;
            let a = a.as_primitive::<TimestampMicrosecondType>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        hash_i64(a.value(i))
                    }
                })
                .collect()
        }
        DataType::Decimal128(_, _) => {
            let a = col.as_primitive::<Decimal128Type>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        hash_bytes(&a.value(i).to_le_bytes())
                    }
                })
                .collect()
        }
        DataType::Float32 | DataType::Float64 => {
            let a = if col.data_type() == &DataType::Float32 {
                let f = col.as_primitive::<Float32Type>();
                arrow::compute::kernels::cast::cast(f, &DataType::Float64)?
            } else {
                col.clone()
            };
            let a = a.as_primitive::<Float64Type>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        let v = a.value(i);
                        let v = if v == 0.0 { 0.0f64 } else { v };
                        hash_bytes(&v.to_bits().to_le_bytes())
                    }
                })
                .collect()
        }
        DataType::Boolean => {
            let a = col.as_boolean();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        hash_i64(i64::from(a.value(i)))
                    }
                })
                .collect()
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        hash_bytes(a.value(i).as_bytes())
                    }
                })
                .collect()
        }
        DataType::LargeUtf8 => {
            let a = col.as_string::<i64>();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        hash_bytes(a.value(i).as_bytes())
                    }
                })
                .collect()
        }
        DataType::Utf8View => {
            let a = col.as_string_view();
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        NULL_HASH
                    } else {
                        hash_bytes(a.value(i).as_bytes())
                    }
                })
                .collect()
        }
        other => {
            return Err(Error::sql(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("type {other} cannot be a distribution key"),
            ));
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn integer_widths_hash_alike() {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3, 1000]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 1000]));
        assert_eq!(slice_of_rows(&a, 4).unwrap(), slice_of_rows(&b, 4).unwrap());
    }

    const PINNED_42: u64 = 16_239_707_572_940_805_204;
    const PINNED_BLUESHIFT: u64 = 11_168_382_914_813_548_213;

    #[test]
    fn version_1_is_stable() {
        // Pinned: changing these values changes where stored rows live.
        assert_eq!(hash_i64(42), PINNED_42);
        assert_eq!(hash_bytes(b"blueshift"), PINNED_BLUESHIFT);
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "a"]));
        let s = slice_of_rows(&strings, 7).unwrap();
        assert_eq!(s[0], s[2]);
    }

    #[test]
    fn exchange_buckets_of_one_column_are_slices() {
        let a: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            None,
            Some(-7),
            Some(1 << 40),
        ]));
        assert_eq!(
            bucket_of_rows(std::slice::from_ref(&a), 4).unwrap(),
            slice_of_rows(&a, 4).unwrap()
        );
        let b: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "z", "x"]));
        let two = bucket_of_rows(&[a.clone(), b.clone()], 5).unwrap();
        assert_eq!(two, bucket_of_rows(&[a, b], 5).unwrap());
        assert!(two.iter().all(|s| *s < 5));
        let t: ArrayRef = Arc::new(arrow::array::Time64NanosecondArray::from(vec![1, 2, 1]));
        let h = bucket_of_rows(&[t], 3).unwrap();
        assert_eq!(h[0], h[2]);
    }

    #[test]
    fn keys_spread_over_all_slices() {
        let a: ArrayRef = Arc::new(Int64Array::from((0..10_000).collect::<Vec<i64>>()));
        let slices = slice_of_rows(&a, 4).unwrap();
        let mut counts = [0usize; 4];
        for s in slices {
            counts[s as usize] += 1;
        }
        for c in counts {
            assert!(c > 2000, "skewed: {counts:?}");
        }
    }
}
