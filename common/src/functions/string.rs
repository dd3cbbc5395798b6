//! String functions with Redshift's names and semantics.
//!
//! * `REGEXP_SUBSTR(source, pattern [, position [, occurrence [, parameters]]])`: the
//!   `occurrence`-th match of `pattern` in `source` from character `position` on. As in
//!   Redshift: no match gives an empty string (PostgreSQL's gives NULL); a position below 1
//!   searches from the first character, one past the end gives an empty string; an occurrence
//!   below 1 gives NULL; `parameters` is any of `c` (case-sensitive, the default), `i`
//!   (case-insensitive), `e` (return the first parenthesized subexpression, or the whole match
//!   when the pattern has none) and `p` (Perl-compatible syntax: the `regex` crate's syntax
//!   is that already, and a superset of the POSIX classes Redshift's default dialect has).
//!   Any NULL argument gives NULL.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use regex::{Regex, RegexBuilder};

use crate::error::sqlstate;

fn sql_error(code: &'static str, message: String) -> datafusion::error::DataFusionError {
    crate::Error::sql(code, message).into_datafusion()
}

/// Coerces the arguments of a function whose argument `i` is a string when `strings[i]` and
/// an integer otherwise, with `required` of them mandatory.
fn coerce_string_int_args(
    name: &str,
    arg_types: &[DataType],
    strings: &[bool],
    required: usize,
) -> Result<Vec<DataType>> {
    if arg_types.len() < required || arg_types.len() > strings.len() {
        return plan_err!(
            "function {name} takes {required} to {} arguments, not {}",
            strings.len(),
            arg_types.len()
        );
    }
    arg_types
        .iter()
        .zip(strings)
        .enumerate()
        .map(|(i, (t, &string))| {
            let fits = if string {
                matches!(
                    t,
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
                )
            } else {
                t.is_integer() || *t == DataType::Null
            };
            if !fits {
                return plan_err!(
                    "function {name}: argument {} must be {}, not {t}",
                    i + 1,
                    if string { "a string" } else { "an integer" }
                );
            }
            Ok(if string {
                DataType::Utf8
            } else {
                DataType::Int64
            })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpSubstr {
    signature: Signature,
}

pub(super) fn regexp_substr() -> ScalarUDF {
    ScalarUDF::new_from_impl(RegexpSubstr {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

/// What REGEXP_SUBSTR's `parameters` argument asks for.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RegexpParameters {
    case_insensitive: bool,
    subexpression: bool,
}

impl RegexpParameters {
    fn parse(function: &str, text: &str) -> Result<Self> {
        let mut out = RegexpParameters {
            case_insensitive: false,
            subexpression: false,
        };
        for c in text.chars() {
            match c {
                'c' => out.case_insensitive = false,
                'i' => out.case_insensitive = true,
                'e' => out.subexpression = true,
                'p' => {}
                other => {
                    return Err(sql_error(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("{function}: invalid regular expression parameter '{other}'"),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Compiled patterns of one batch, by pattern text and flags: the pattern is almost always a
/// literal, so it is compiled once per batch.
#[derive(Default)]
struct RegexCache {
    compiled: HashMap<(String, bool), Regex>,
}

impl RegexCache {
    fn get(&mut self, function: &str, pattern: &str, case_insensitive: bool) -> Result<&Regex> {
        let key = (pattern.to_string(), case_insensitive);
        if !self.compiled.contains_key(&key) {
            let re = RegexBuilder::new(pattern)
                .case_insensitive(case_insensitive)
                .build()
                .map_err(|e| {
                    sql_error(
                        sqlstate::INVALID_REGULAR_EXPRESSION,
                        format!("{function}: invalid regular expression '{pattern}': {e}"),
                    )
                })?;
            self.compiled.insert(key.clone(), re);
        }
        Ok(&self.compiled[&key])
    }
}

/// The byte offset of character `position` (1-based; below 1 means the first), or `None` when
/// the string has fewer characters.
fn char_offset(source: &str, position: i64) -> Option<usize> {
    let skip = usize::try_from(position.max(1) - 1).unwrap_or(usize::MAX);
    if skip == 0 {
        return Some(0);
    }
    source
        .char_indices()
        .nth(skip)
        .map(|(i, _)| i)
        .or((source.chars().count() == skip).then_some(source.len()))
}

fn regexp_substr_one(
    re: &Regex,
    source: &str,
    position: i64,
    occurrence: i64,
    subexpression: bool,
) -> Option<String> {
    if occurrence < 1 {
        return None;
    }
    let Some(start) = char_offset(source, position) else {
        return Some(String::new());
    };
    let haystack = &source[start..];
    let nth = usize::try_from(occurrence - 1).unwrap_or(usize::MAX);
    let found = if subexpression && re.captures_len() > 1 {
        re.captures_iter(haystack)
            .nth(nth)
            .map(|c| c.get(1).map(|m| m.as_str()).unwrap_or(""))
    } else {
        re.find_iter(haystack).nth(nth).map(|m| m.as_str())
    };
    Some(found.unwrap_or("").to_string())
}

impl ScalarUDFImpl for RegexpSubstr {
    fn name(&self) -> &str {
        "regexp_substr"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_string_int_args(self.name(), arg_types, &[true, true, false, false, true], 2)
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let string = |i: usize| -> Result<Option<StringArray>> {
            arrays
                .get(i)
                .map(|a| Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone()))
                .transpose()
        };
        let integer = |i: usize| -> Result<Option<Int64Array>> {
            arrays
                .get(i)
                .map(|a| {
                    Ok(cast(a, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone())
                })
                .transpose()
        };
        let (Some(source), Some(pattern)) = (string(0)?, string(1)?) else {
            return plan_err!("function regexp_substr takes at least 2 arguments");
        };
        let position = integer(2)?;
        let occurrence = integer(3)?;
        let parameters = string(4)?;
        let mut cache = RegexCache::default();
        let mut out = StringBuilder::with_capacity(rows, 0);
        for row in 0..rows {
            let int_at = |a: &Option<Int64Array>| -> Option<i64> {
                match a {
                    None => Some(1),
                    Some(a) if a.is_null(row) => None,
                    Some(a) => Some(a.value(row)),
                }
            };
            let params = match &parameters {
                None => Some(""),
                Some(p) if p.is_null(row) => None,
                Some(p) => Some(p.value(row)),
            };
            let (Some(position), Some(occurrence), Some(params)) =
                (int_at(&position), int_at(&occurrence), params)
            else {
                out.append_null();
                continue;
            };
            if source.is_null(row) || pattern.is_null(row) {
                out.append_null();
                continue;
            }
            let params = RegexpParameters::parse("REGEXP_SUBSTR", params)?;
            let re = cache.get("REGEXP_SUBSTR", pattern.value(row), params.case_insensitive)?;
            out.append_option(regexp_substr_one(
                re,
                source.value(row),
                position,
                occurrence,
                params.subexpression,
            ));
        }
        let result: ArrayRef = Arc::new(out.finish());
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &result, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn substr(source: &str, pattern: &str, position: i64, occurrence: i64, e: bool) -> String {
        let re = Regex::new(pattern).unwrap();
        regexp_substr_one(&re, source, position, occurrence, e).unwrap_or_else(|| "<null>".into())
    }

    #[test]
    fn regexp_substr_follows_redshift() {
        assert_eq!(
            substr("character varying(256)", "[0-9]+", 1, 1, false),
            "256"
        );
        assert_eq!(substr("numeric(18,2)", "[0-9,]+", 1, 1, false), "18,2");
        assert_eq!(substr("integer", "[0-9]+", 1, 1, false), "");
        assert_eq!(substr("a1b22c333", "[0-9]+", 1, 3, false), "333");
        assert_eq!(substr("a1b22c333", "[0-9]+", 3, 1, false), "22");
        assert_eq!(substr("a1b22c333", "[0-9]+", -5, 1, false), "1");
        assert_eq!(substr("a1b22c333", "[0-9]+", 1, 0, false), "<null>");
        assert_eq!(substr("abc", "c", 3, 1, false), "c");
        assert_eq!(substr("abc", ".", 4, 1, false), "");
        assert_eq!(substr("abc", ".", 99, 1, false), "");
        assert_eq!(substr("héllo wörld", "w.r", 2, 1, false), "wör");
        assert_eq!(substr("key=value", "key=(\\w+)", 1, 1, true), "value");
        assert_eq!(substr("key=value", "key=\\w+", 1, 1, true), "key=value");
    }

    #[test]
    fn regexp_parameters_reject_unknown_letters() {
        assert!(RegexpParameters::parse("REGEXP_SUBSTR", "ie").is_ok());
        assert!(RegexpParameters::parse("REGEXP_SUBSTR", "x").is_err());
    }
}
