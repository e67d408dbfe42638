//! Whether a migration is safe to apply while the previous release still serves (a rolling
//! upgrade): it may add (tables, nullable columns, columns with a default, indexes), but not
//! take away or change what the running release reads and writes. Such a change goes in two
//! releases: expand (add the new shape; write both) and, once no old binary runs, contract.
//!
//! The check reads the migration's SQL statement by statement; it is a guard for reviewers
//! and operators, not a proof: it knows the statements our migrations use.

/// Why a statement is not online-safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hazard {
    /// The statement, whitespace folded and cut short.
    pub statement: String,
    pub reason: &'static str,
}

/// The hazards of one migration's SQL; none means online-safe.
pub fn online_hazards(sql: &str) -> Vec<Hazard> {
    statements(sql)
        .filter_map(|statement| {
            let reason = hazard(&statement.to_uppercase())?;
            Some(Hazard {
                statement: statement.chars().take(100).collect(),
                reason,
            })
        })
        .collect()
}

/// The statements of `sql`, without `--` comments, whitespace folded.
fn statements(sql: &str) -> impl Iterator<Item = String> + '_ {
    let without_comments: String = sql
        .lines()
        .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join(" ");
    without_comments
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}

/// A rule: whether it applies to an upper-cased statement, and what it breaks.
type Rule<'a> = (&'a dyn Fn(&str) -> bool, &'static str);

fn hazard(statement: &str) -> Option<&'static str> {
    let rules: [Rule<'_>; 6] = [
        (
            &|s| s.starts_with("DROP TABLE"),
            "drops a table the running release may still use",
        ),
        (
            &|s| s.starts_with("ALTER TABLE") && s.contains(" DROP COLUMN "),
            "drops a column the running release may still read or write",
        ),
        (
            &|s| s.starts_with("ALTER TABLE") && s.contains(" RENAME "),
            "renames what the running release names (a table rebuild ends this way)",
        ),
        (
            &|s| {
                s.starts_with("ALTER TABLE") && s.contains(" ALTER COLUMN ") && s.contains(" TYPE ")
            },
            "changes a column's type under the running release",
        ),
        (
            &|s| {
                s.starts_with("ALTER TABLE")
                    && s.contains(" ALTER COLUMN ")
                    && s.contains(" SET NOT NULL")
            },
            "makes a column required that the running release may leave empty",
        ),
        (
            &adds_required_column,
            "adds a required column without a default: the running release's inserts fail",
        ),
    ];
    rules
        .iter()
        .find(|(applies, _)| applies(statement))
        .map(|(_, reason)| *reason)
}

fn adds_required_column(statement: &str) -> bool {
    statement.starts_with("ALTER TABLE")
        && statement.contains(" ADD COLUMN ")
        && statement.contains(" NOT NULL")
        && !statement.contains(" DEFAULT ")
        && !statement.contains(" GENERATED ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_are_online_safe() {
        let sql = "-- a comment; with a semicolon\n\
            CREATE TABLE t (id UUID PRIMARY KEY, note TEXT NOT NULL);\n\
            CREATE INDEX t_note ON t (note);\n\
            ALTER TABLE users ADD COLUMN email_verified_at BIGINT;\n\
            ALTER TABLE users ADD COLUMN type TEXT;\n\
            ALTER TABLE users ADD COLUMN method TEXT NOT NULL DEFAULT 'none';\n\
            INSERT INTO t (id, note) SELECT id, 'x' FROM users;";
        assert_eq!(online_hazards(sql), Vec::new());
    }

    #[test]
    fn what_takes_away_or_changes_is_named() {
        let sql = "CREATE TABLE e_new (seq INTEGER PRIMARY KEY);\n\
            DROP TABLE e;\n\
            ALTER TABLE e_new RENAME TO e;\n\
            ALTER TABLE u DROP COLUMN legacy;\n\
            ALTER TABLE u ALTER COLUMN n TYPE BIGINT;\n\
            ALTER TABLE u ALTER COLUMN m SET NOT NULL;\n\
            alter table u add column k text not null;";
        let reasons: Vec<_> = online_hazards(sql).into_iter().map(|h| h.reason).collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(reasons[0].starts_with("drops a table"));
        assert!(reasons[5].starts_with("adds a required column"));
    }

    /// SQLite cannot change a column in place, so our SQLite migrations rebuild tables (copy,
    /// drop, rename): not online-safe. The same change on PostgreSQL is.
    #[test]
    fn a_sqlite_table_rebuild_is_not_online_safe() {
        let find = |migrator: &sqlx::migrate::Migrator| {
            migrator
                .iter()
                .find(|m| m.description == "usage folded at claim")
                .map(|m| online_hazards(&m.sql))
                .unwrap()
        };
        // The migrators of the build, embedded here again: `migrations` uses this module.
        let sqlite = find(&sqlx::migrate!("../../migrations/sqlite"));
        assert!(
            sqlite.iter().any(|h| h.reason.starts_with("drops a table")),
            "{sqlite:?}"
        );
        assert!(
            sqlite.iter().any(|h| h.reason.starts_with("renames")),
            "{sqlite:?}"
        );
        assert_eq!(
            find(&sqlx::migrate!("../../migrations/postgres")),
            Vec::new()
        );
    }
}
