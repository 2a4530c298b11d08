//! Paging as the list actions apply it: one check of `limit`/`offset` and one way to cut a
//! page out of a list filtered in memory (for lists whose filter the store cannot apply).

use crsd_core::{Error, Field, Result};

/// The most rows one page holds, as the cloud applies it.
pub(crate) const MAX_PAGE: i64 = 1000;

/// `limit` within [0, [`MAX_PAGE`]] and `offset` not negative, or the error naming which.
pub(crate) fn check(limit: i64, offset: i64) -> Result<()> {
    if !(0..=MAX_PAGE).contains(&limit) {
        return Err(Error::invalid_field(
            Field::Limit,
            format!("must be within [0, {MAX_PAGE}]"),
        ));
    }
    if offset < 0 {
        return Err(Error::invalid_field(Field::Offset, "must not be negative"));
    }
    Ok(())
}

/// How many `all` holds, and its page from `offset`, at most `limit` long (both already
/// checked not to be negative).
pub(crate) fn cut<T>(all: Vec<T>, offset: i64, limit: i64) -> (i64, Vec<T>) {
    let total = all.len() as i64;
    let page = all
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    (total, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_pages() {
        assert!(check(0, 0).is_ok());
        assert!(check(MAX_PAGE, 5).is_ok());
        assert!(check(MAX_PAGE + 1, 0).is_err());
        assert!(check(-1, 0).is_err());
        assert!(check(10, -1).is_err());
        assert_eq!(cut(vec![1, 2, 3, 4, 5], 1, 2), (5, vec![2, 3]));
        assert_eq!(cut(vec![1, 2], 5, 2), (2, vec![]));
        assert_eq!(cut(vec![1, 2], 0, i64::MAX), (2, vec![1, 2]));
    }
}
