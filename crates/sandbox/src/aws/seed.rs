//! Many subscribed buyers at once, for load tests (`marketlink bench day`): a purchase and its
//! subscribe-success without the notifications, which marketlink would otherwise have to take
//! one by one before the test can begin.

use super::{AwsSandbox, OfferKind, lifecycle::Purchase, state::SubscriptionState};

impl AwsSandbox {
    /// `count` pay-as-you-go agreements of `product_code`, already subscribed (meterable), for
    /// buyer accounts `first_account`, `first_account + 1`, … (12 digits). No notification is
    /// sent: the caller tells marketlink about them itself (its store's bulk inserts).
    pub fn seed_subscribed(
        &self,
        product_code: &str,
        first_account: u64,
        count: usize,
    ) -> anyhow::Result<Vec<Purchase>> {
        let purchases = (0..count as u64)
            .map(|i| {
                let account = format!("{:012}", first_account + i);
                self.purchase(product_code, OfferKind::Subscription, &account)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut st = self.lock();
        for purchase in &purchases {
            if let Some(agreement) = st.agreements.get_mut(&purchase.agreement_id) {
                agreement.state = SubscriptionState::Subscribed;
            }
        }
        self.persist(&st);
        Ok(purchases)
    }

    /// Records in the metered ledger for hours before `hour`: how a load test follows
    /// delivery without copying the whole ledger.
    pub fn metered_records_before(&self, hour: time::OffsetDateTime) -> usize {
        self.lock().ledger.iter().filter(|m| m.hour < hour).count()
    }
}
