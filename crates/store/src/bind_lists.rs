//! How a list of values reaches one statement: the store's single builder of SQL parameter
//! lists, so every multi-row statement numbers and shapes its parameters the same way.
//!
//! - [`anonymous_rows`]: `VALUES (?,?),(?,?)…` rows of anonymous `?` parameters (SQLite: a
//!   `$N` parameter is looked up by name, a cost that grows with the statement's width);
//! - [`numbered_rows`]: `($1,$2),($3,$4)…` rows of numbered parameters, for statements that
//!   run on both backends;
//! - [`numbered_list`]: `$3,$4,$5`, the inside of an `IN (…)` list;
//! - [`sqlite_chunks`]: a batch cut into a few fixed widths, so the statement cache serves
//!   every batch size;
//! - [`array_column`]: one column of a batch as a PostgreSQL array bind (`UNNEST`, `= ANY`);
//! - [`json_id_list`]: ids as one JSON array parameter, for SQLite's `json_each`.

use std::fmt::Write as _;

use uuid::Uuid;

use crate::StoreError;

/// The widest SQLite statement, in rows; narrower chunks are powers of two.
const SQLITE_ROWS: usize = 256;

/// `items` in chunks of [`SQLITE_ROWS`] and then powers of two: at most nine statement shapes
/// per table serve every batch size, each prepared once per connection.
pub(crate) fn sqlite_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= SQLITE_ROWS {
            SQLITE_ROWS
        } else {
            1 << rest.len().ilog2()
        };
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// `prefix row,row,…,row suffix` with `rows` copies of `row` (written with `?` parameters).
pub(crate) fn anonymous_rows(prefix: &str, row: &str, rows: usize, suffix: &str) -> String {
    let mut sql = String::with_capacity(prefix.len() + (row.len() + 1) * rows + suffix.len());
    sql.push_str(prefix);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql.push_str(suffix);
    sql
}

/// `prefix ($1..$k extra),($k+1..$2k extra),… suffix` for `rows` rows of `columns`
/// parameters each. In `extra`, `$0` stands for the row's last parameter (so literal columns
/// can repeat it); pass `""` for plain rows.
pub(crate) fn numbered_rows(
    prefix: &str,
    rows: usize,
    columns: usize,
    extra: &str,
    suffix: &str,
) -> String {
    let mut sql = String::with_capacity(prefix.len() + suffix.len() + rows * columns * 7);
    sql.push_str(prefix);
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        let first = r * columns + 1;
        push_numbered(&mut sql, first, columns);
        sql.push_str(&extra.replace("$0", &format!("${}", first + columns - 1)));
        sql.push(')');
    }
    sql.push_str(suffix);
    sql
}

/// `$first,$first+1,…` for `n` parameters: the inside of an `IN (…)` list.
pub(crate) fn numbered_list(first: usize, n: usize) -> String {
    let mut sql = String::with_capacity(n * 5);
    push_numbered(&mut sql, first, n);
    sql
}

/// Appends `$first,…,$first+n-1`.
fn push_numbered(sql: &mut String, first: usize, n: usize) {
    for i in first..first + n {
        if i > first {
            sql.push(',');
        }
        // Writing to a `String` cannot fail.
        let _ = write!(sql, "${i}");
    }
}

/// One column of a PostgreSQL array bind: `f` of every item.
pub(crate) fn array_column<'a, T, U>(items: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    items.iter().map(f).collect()
}

/// These ids as a JSON array of hex strings, for `json_each` on SQLite (`unhex(value)`): one
/// parameter however many ids.
pub(crate) fn json_id_list(ids: impl Iterator<Item = Uuid>) -> Result<String, StoreError> {
    // Written in place: hex needs no escaping, and a claim lists thousands of ids.
    let mut json = String::from("[");
    let mut buffer = Uuid::encode_buffer();
    for (i, id) in ids.enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push('"');
        json.push_str(id.simple().encode_lower(&mut buffer));
        json.push('"');
    }
    json.push(']');
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_chunks_use_few_widths() {
        let items: Vec<u32> = (0..600).collect();
        let widths: Vec<usize> = sqlite_chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(widths, vec![256, 256, 64, 16, 8]);
        assert_eq!(sqlite_chunks(&items[..1]).count(), 1);
        assert_eq!(sqlite_chunks(&items[..0]).count(), 0);
    }

    #[test]
    fn anonymous_rows_repeat_the_row_shape() {
        assert_eq!(
            anonymous_rows("V ", "(?,?)", 3, ";"),
            "V (?,?),(?,?),(?,?);"
        );
        assert_eq!(anonymous_rows("V ", "(?)", 0, ";"), "V ;");
    }

    #[test]
    fn numbered_rows_number_parameters_and_repeat_the_last() {
        assert_eq!(
            numbered_rows("V ", 2, 2, ", 'x', $0", ";"),
            "V ($1,$2, 'x', $2),($3,$4, 'x', $4);"
        );
        assert_eq!(
            numbered_rows("INSERT INTO t VALUES ", 2, 3, "", ""),
            "INSERT INTO t VALUES ($1,$2,$3),($4,$5,$6)"
        );
    }

    #[test]
    fn numbered_lists_start_where_asked() {
        assert_eq!(numbered_list(1, 3), "$1,$2,$3");
        assert_eq!(numbered_list(2, 1), "$2");
        assert_eq!(numbered_list(10, 2), "$10,$11");
    }

    #[test]
    fn array_columns_take_one_field_of_each_item() {
        let items = [(1, "a"), (2, "b")];
        assert_eq!(array_column(&items, |(n, _)| *n), vec![1, 2]);
        assert_eq!(array_column(&items, |(_, s)| *s), vec!["a", "b"]);
    }

    #[test]
    fn json_id_lists_are_hex_strings() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            json_id_list([id].into_iter()).unwrap(),
            r#"["0123456789abcdef0123456789abcdef"]"#
        );
        assert_eq!(json_id_list(std::iter::empty()).unwrap(), "[]");
    }
}
