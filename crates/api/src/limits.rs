//! Bounds on the shape of a request's parameters, the same for every dialect.
//!
//! Parameter names and values come from anyone who can reach the listener, before and after
//! authentication, and the API 3.0 and Capital Online dialects fold flattened names
//! (`InstanceParams.0.Key`) into nested values. Without bounds a single request with a name of
//! ten thousand segments, a list index of eleven digits or a hundred thousand pairs costs crsd
//! far more than the client: these limits keep the work for any request small and linear, and
//! the folding (`tc3::params`) never recurses on input.
//!
//! The limits sit well above what any documented action needs: the deepest model field is
//! three segments (`InstanceParams.0.Key`), the longest name about 25 bytes, the longest value
//! a 64-character password or a 256-character remark, and no list of a model holds 1,000
//! items. A request beyond them is refused with the dialect's invalid-parameter error
//! ([`Error::InvalidParameter`]), naming the parameter (cut to [`SHOWN_NAME_CHARS`]).
//!
//! JSON bodies get the same bounds by [`check_json`]; serde_json's own recursion limit (128
//! levels, its default, kept on purpose) stops a deeper document while it is parsed.

use crsd_core::{Error, Result};
use serde_json::{Map, Value};

/// Segments of one parameter name (`A.B.C` has three).
pub const MAX_SEGMENTS: usize = 8;
/// Bytes of one parameter name.
pub const MAX_NAME_BYTES: usize = 128;
/// Digits of a list index segment: indexes run 0-999.
pub const MAX_INDEX_DIGITS: usize = 3;
/// Items of one list (`MAX_INDEX_DIGITS` digits' worth).
pub const MAX_LIST_ITEMS: usize = 1000;
/// Bytes of one parameter value.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Parameters (name-value pairs, or leaves of a JSON body) of one request.
pub const MAX_PAIRS: usize = 512;
/// Bytes of all names and values of one request, decoded.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024;
/// Characters of a refused name quoted back in the error message.
pub const SHOWN_NAME_CHARS: usize = 40;

/// Checks every pair of a decoded query or form: how many, how large, and each name and
/// value (see [`segments`] and [`check_value`]).
pub fn check_pairs(pairs: &[(String, String)]) -> Result<()> {
    if pairs.len() > MAX_PAIRS {
        return Err(too_many());
    }
    let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_TOTAL_BYTES {
        return Err(too_large());
    }
    for (name, value) in pairs {
        segments(name)?;
        check_value(name, value)?;
    }
    Ok(())
}

/// The segments of a flattened name, checked: the name is 1-[`MAX_NAME_BYTES`] bytes without
/// control characters, of at most [`MAX_SEGMENTS`] non-empty segments separated by `.`, and a
/// segment of digits is a list index of at most [`MAX_INDEX_DIGITS`] digits.
pub fn segments(name: &str) -> Result<Vec<&str>> {
    if name.is_empty() {
        return Err(Error::invalid("(empty name)", "a parameter needs a name"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            &shown(name),
            format!("the name is longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            &shown(name),
            "the name holds control characters",
        ));
    }
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > MAX_SEGMENTS {
        return Err(Error::invalid(
            &shown(name),
            format!("the name has more than {MAX_SEGMENTS} segments"),
        ));
    }
    for part in &parts {
        if part.is_empty() {
            return Err(Error::invalid(
                &shown(name),
                "the name has an empty segment",
            ));
        }
        if is_index(part) && part.len() > MAX_INDEX_DIGITS {
            return Err(Error::invalid(
                &shown(name),
                format!("a list index is at most {}", MAX_LIST_ITEMS - 1),
            ));
        }
    }
    Ok(parts)
}

/// A value: at most [`MAX_VALUE_BYTES`] bytes, no control characters (no documented value has
/// any; they would reach logs, files and redis.conf).
pub fn check_value(name: &str, value: &str) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid(
            &shown(name),
            format!("the value is longer than {MAX_VALUE_BYTES} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(
            &shown(name),
            "the value holds control characters",
        ));
    }
    Ok(())
}

/// The same bounds for a JSON body's object: nesting (object keys and array positions count
/// as segments), key size, list length, string size, number of leaves and total size. The walk
/// keeps its own stack: no recursion on input.
pub fn check_json(root: &Map<String, Value>) -> Result<()> {
    let (mut leaves, mut total) = (0usize, 0usize);
    // (value, its depth in segments, the name it is reported under)
    let mut stack: Vec<(&Value, usize, &str)> = Vec::new();
    for (key, value) in root {
        check_key(key, &mut total)?;
        stack.push((value, 1, key.as_str()));
    }
    while let Some((value, depth, name)) = stack.pop() {
        if depth > MAX_SEGMENTS {
            return Err(Error::invalid(
                &shown(name),
                format!("the value nests more than {MAX_SEGMENTS} levels"),
            ));
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    check_key(key, &mut total)?;
                    stack.push((child, depth + 1, name));
                }
            }
            Value::Array(items) => {
                if items.len() > MAX_LIST_ITEMS {
                    return Err(Error::invalid(
                        &shown(name),
                        format!("a list holds at most {MAX_LIST_ITEMS} items"),
                    ));
                }
                stack.extend(items.iter().map(|item| (item, depth + 1, name)));
            }
            Value::String(s) => {
                check_value(name, s)?;
                total += s.len();
                leaves += 1;
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => leaves += 1,
        }
        if leaves > MAX_PAIRS {
            return Err(too_many());
        }
        if total > MAX_TOTAL_BYTES {
            return Err(too_large());
        }
    }
    Ok(())
}

fn check_key(key: &str, total: &mut usize) -> Result<()> {
    if key.is_empty() || key.len() > MAX_NAME_BYTES || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            &shown(key),
            format!("a key is 1-{MAX_NAME_BYTES} bytes without control characters"),
        ));
    }
    *total += key.len();
    Ok(())
}

/// A segment made of ASCII digits only: a list index.
pub fn is_index(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

/// A name as quoted back to the client: at most [`SHOWN_NAME_CHARS`] characters, control
/// characters replaced.
pub fn shown(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(SHOWN_NAME_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.chars().nth(SHOWN_NAME_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn too_many() -> Error {
    Error::invalid(
        "(parameters)",
        format!("a request carries at most {MAX_PAIRS} parameters"),
    )
}

fn too_large() -> Error {
    Error::invalid(
        "(parameters)",
        format!("the parameters of a request hold at most {MAX_TOTAL_BYTES} bytes"),
    )
}
