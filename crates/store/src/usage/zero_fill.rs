//! Zero-filling: an hour with no usage still gets a total (of zero) once it has closed, so
//! that marketplaces expecting a record every hour get one. Each subscription's cursor
//! (`usage_cursors.zero_from`) remembers where its zero rows stop, so a subscription already
//! filled through the hour costs one indexed read.

use std::collections::HashMap;

use marketlink_core::SubscriptionId;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    Store, StoreError,
    bind_lists::{numbered_list, numbered_rows},
    millis, on_pool,
};

const HOUR_MS: i64 = 3_600_000;

impl Store {
    /// Creates zero-quantity totals for a subscription's closed hours that have none, from
    /// where the last call stopped (or `first_hour` on the first call) through `through`,
    /// never further back than `oldest`. Returns how many were created.
    #[expect(
        clippy::too_many_arguments,
        reason = "one bookkeeping step, spelled out"
    )]
    pub async fn usage_fill_zero_hours(
        &self,
        subscription: SubscriptionId,
        marketplace: &str,
        dimensions: &[String],
        first_hour: OffsetDateTime,
        through: OffsetDateTime,
        oldest: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        self.usage_fill_zero_hours_of(
            &[(subscription, marketplace, dimensions)],
            first_hour,
            through,
            oldest,
            now,
        )
        .await
    }

    /// [`Store::usage_fill_zero_hours`] for many subscriptions (`(id, marketplace,
    /// dimensions)`) in one transaction. Subscriptions whose cursor is already past `through`
    /// (the usual case between two hours) cost one indexed read each. When every cursor is past
    /// `through`, neither the fold (which locks the ledger against ingest) nor a write
    /// transaction is needed: the flusher asks for every page of 500 subscriptions on every
    /// run, 200 times at 100k (issue 22). Otherwise it folds first: hours with usage stored but
    /// not folded yet are not empty, and must not be counted as zero rows created.
    pub async fn usage_fill_zero_hours_of(
        &self,
        subscriptions: &[(SubscriptionId, &str, &[String])],
        first_hour: OffsetDateTime,
        through: OffsetDateTime,
        oldest: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let rows = self.backend().insert_rows();
        let through_ms = millis(through);
        let ids: Vec<Uuid> = subscriptions.iter().map(|(id, _, _)| id.0).collect();
        if ids.is_empty() || self.usage_cursors_past(&ids, through_ms).await? {
            return Ok(0);
        }
        self.usage_fold().await?;
        let _turn = self.write_turn().await;
        let created = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Where each subscription's zero rows start: its cursor, created on first sight.
            let mut cursors: HashMap<Uuid, i64> = HashMap::with_capacity(ids.len());
            for chunk in ids.chunks(rows) {
                let sql = cursors_select(chunk.len());
                let mut query = sqlx::query_as::<_, (Uuid, i64)>(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                cursors.extend(query.fetch_all(&mut *tx).await?);
            }
            let missing: Vec<Uuid> = ids
                .iter()
                .copied()
                .filter(|id| !cursors.contains_key(id))
                .collect();
            for chunk in missing.chunks(rows) {
                let sql = cursors_insert(chunk.len());
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(*id).bind(millis(first_hour));
                }
                query.execute(&mut *tx).await?;
                // Read back: a concurrent flusher may have created some first.
                let sql = cursors_select(chunk.len());
                let mut query = sqlx::query_as::<_, (Uuid, i64)>(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                cursors.extend(query.fetch_all(&mut *tx).await?);
            }
            let plan = ZeroFill::plan(subscriptions, &cursors, millis(oldest), through_ms);
            let mut created = 0;
            for chunk in plan.rows.chunks(rows) {
                let sql = zero_hours_insert(chunk.len());
                let mut query = sqlx::query(&sql);
                for (sub, marketplace, hour, dimension) in chunk {
                    query = query
                        .bind(Uuid::now_v7())
                        .bind(*sub)
                        .bind(*marketplace)
                        .bind(dimension.as_str())
                        .bind(*hour)
                        .bind(millis(now));
                }
                created += query.execute(&mut *tx).await?.rows_affected();
            }
            // Cursors move past `through` (never back).
            for chunk in plan.behind.chunks(rows) {
                let sql = cursors_advance(chunk.len());
                let mut query = sqlx::query(&sql).bind(through_ms + HOUR_MS);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            created
        });
        Ok(created)
    }
}

impl Store {
    /// Whether every one of `ids` has a zero-fill cursor past `through_ms`.
    async fn usage_cursors_past(&self, ids: &[Uuid], through_ms: i64) -> Result<bool, StoreError> {
        let mut past = 0;
        for chunk in ids.chunks(self.backend().insert_rows()) {
            let sql = cursors_select(chunk.len());
            let cursors: Vec<(Uuid, i64)> = on_pool!(self, |pool| {
                let mut query = sqlx::query_as::<_, (Uuid, i64)>(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.fetch_all(pool).await?
            });
            past += cursors
                .iter()
                .filter(|(_, from)| *from > through_ms)
                .count();
        }
        Ok(past == ids.len())
    }

    /// A subscription active again after it ended (a re-subscription) expects zero hours from
    /// `from` on, not for the hours it was cancelled in between (the marketplace refuses those:
    /// AWS answers CustomerNotSubscribed). Moves its cursor forward to `from`, never back.
    pub async fn usage_resume_zero_fill(
        &self,
        subscription: SubscriptionId,
        from: OffsetDateTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE usage_cursors SET zero_from = $1 \
                 WHERE subscription_id = $2 AND zero_from < $1",
            )
            .bind(millis(from))
            .bind(subscription.0)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

/// What one zero-fill writes: the zero rows, `(subscription, marketplace, hour, dimension)`,
/// and the subscriptions whose cursor then moves past `through`.
struct ZeroFill<'a> {
    rows: Vec<(Uuid, &'a str, i64, &'a String)>,
    behind: Vec<Uuid>,
}

impl<'a> ZeroFill<'a> {
    /// Zero rows for the closed hours each subscription has not covered yet: from its cursor
    /// (but not before `oldest_ms`) through `through_ms`, every dimension.
    fn plan(
        subscriptions: &'a [(SubscriptionId, &'a str, &'a [String])],
        cursors: &HashMap<Uuid, i64>,
        oldest_ms: i64,
        through_ms: i64,
    ) -> Self {
        let mut plan = ZeroFill {
            rows: Vec::new(),
            behind: Vec::new(),
        };
        for (id, marketplace, dimensions) in subscriptions {
            let Some(from) = cursors.get(&id.0).copied() else {
                continue;
            };
            if from > through_ms {
                continue;
            }
            plan.behind.push(id.0);
            let mut hour = from.max(oldest_ms);
            while hour <= through_ms {
                for d in dimensions.iter() {
                    plan.rows.push((id.0, marketplace, hour, d));
                }
                hour += HOUR_MS;
            }
        }
        plan
    }
}

/// The cursors of `n` subscriptions (`$1..$n`).
fn cursors_select(n: usize) -> String {
    format!(
        "SELECT subscription_id, zero_from FROM usage_cursors WHERE subscription_id IN ({})",
        numbered_list(1, n)
    )
}

/// New cursors for `n` subscriptions, `(subscription, zero_from)` each; existing ones stay.
fn cursors_insert(n: usize) -> String {
    numbered_rows(
        "INSERT INTO usage_cursors (subscription_id, zero_from) VALUES ",
        n,
        2,
        "",
        " ON CONFLICT (subscription_id) DO NOTHING",
    )
}

/// `n` zero totals, `(id, subscription, marketplace, dimension, hour, now)` each; an hour that
/// has a total keeps it.
fn zero_hours_insert(n: usize) -> String {
    numbered_rows(
        "INSERT INTO usage_hours (id, subscription_id, marketplace, dimension, hour, \
         next_attempt_at, quantity_micros, state, attempts, created_at, updated_at) VALUES ",
        n,
        6,
        ", 0, 'open', 0, $0, $0",
        " ON CONFLICT (subscription_id, dimension, hour) DO NOTHING",
    )
}

/// Moves the cursors of `n` subscriptions (`$2..`) forward to `$1`, never back.
fn cursors_advance(n: usize) -> String {
    format!(
        "UPDATE usage_cursors SET zero_from = $1 \
         WHERE zero_from < $1 AND subscription_id IN ({})",
        numbered_list(2, n)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_covers_the_hours_behind_each_cursor() {
        let a = SubscriptionId(Uuid::from_u128(1));
        let b = SubscriptionId(Uuid::from_u128(2));
        let dims = ["x".to_owned(), "y".to_owned()];
        let subscriptions = [(a, "aws", &dims[..]), (b, "azure", &dims[..1])];
        // `a` is two hours behind (but only one is recent enough); `b` is already through.
        let cursors = HashMap::from([(a.0, 0), (b.0, 3 * HOUR_MS)]);
        let plan = ZeroFill::plan(&subscriptions, &cursors, HOUR_MS, 2 * HOUR_MS);
        assert_eq!(plan.behind, vec![a.0]);
        let hours: Vec<(i64, &str)> = plan.rows.iter().map(|r| (r.2, r.3.as_str())).collect();
        assert_eq!(
            hours,
            vec![
                (HOUR_MS, "x"),
                (HOUR_MS, "y"),
                (2 * HOUR_MS, "x"),
                (2 * HOUR_MS, "y")
            ]
        );
    }
}
