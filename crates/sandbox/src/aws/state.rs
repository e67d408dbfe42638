//! The emulator's state: agreements and their lifecycle, the usage ledger, queues, SNS HTTP
//! subscriptions, the call log and injected errors. What survives a restart (`state_file`) is
//! serialized; the indexes are rebuilt on first use.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{chaos::ChaosState, config::OfferKind};

/// Where an agreement is in its SaaS lifecycle, as notified to the seller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionState {
    /// Token issued, `subscribe-success` not sent yet.
    Pending,
    /// `subscribe-success` / Purchase Agreement Created sent.
    Subscribed,
    /// `subscribe-fail` sent.
    Failed,
    /// `unsubscribe-pending` / Purchase Agreement Ended sent: final metering window.
    UnsubscribePending,
    /// `unsubscribe-success` / License Deprovisioned sent: metering closed.
    Unsubscribed,
}

/// One buyer agreement (one purchase of one offer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    pub agreement_id: String,
    pub product_code: String,
    pub offer_id: String,
    pub offer_kind: OfferKind,
    pub buyer_account_id: String,
    /// Classic customer identifier (stable per buyer account and product).
    pub customer_identifier: String,
    pub license_arn: String,
    pub state: SubscriptionState,
    pub created_at: OffsetDateTime,
    pub start_time: OffsetDateTime,
    pub end_time: Option<OffsetDateTime>,
    pub trial_end_time: Option<OffsetDateTime>,
    /// Contract / free-trial quantities per dimension (entitlements).
    pub quantities: BTreeMap<String, i64>,
    pub registration_token: String,
    /// First agreement of the renewal / replacement chain (`None`: this one).
    #[serde(default)]
    pub initial_agreement_id: Option<String>,
    /// The agreement this one renewed or replaced.
    #[serde(default)]
    pub predecessor: Option<AgreementLink>,
    /// The agreement that renewed or replaced this one (its status is then RENEWED / REPLACED).
    #[serde(default)]
    pub successor: Option<AgreementLink>,
    /// The successor came with a new LicenseArn: this agreement's licence is deprovisioned.
    #[serde(default)]
    pub license_ended: bool,
    /// Set for a channel partner private offer: the partner, not the seller, is the proposer.
    #[serde(default)]
    pub channel_partner: Option<ChannelPartner>,
    /// When its status, terms or successor last changed (`lastUpdateTime` of SearchAgreements:
    /// "updated when any of its attributes or accepted terms change"); `None`: never since
    /// its acceptance.
    #[serde(default)]
    pub updated_at: Option<OffsetDateTime>,
}

/// How one agreement follows another (`agreement.intent` of Purchase Agreement Created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgreementChange {
    /// A new agreement from the same offer's terms (e.g. an auto-renewal).
    Renew,
    /// A new agreement from an agreement replacement offer.
    Replace,
}

impl AgreementChange {
    pub fn intent(self) -> &'static str {
        match self {
            AgreementChange::Renew => "RENEW",
            AgreementChange::Replace => "REPLACE",
        }
    }

    /// The superseded agreement's status (AgreementStatus in the Agreement API model).
    pub fn superseded_status(self) -> &'static str {
        match self {
            AgreementChange::Renew => "RENEWED",
            AgreementChange::Replace => "REPLACED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementLink {
    pub agreement_id: String,
    pub change: AgreementChange,
}

/// The reseller of a channel partner private offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPartner {
    pub account_id: String,
    pub resale_authorization_id: String,
}

impl Agreement {
    /// Usage can be billed to it: live and not superseded by a renewal or replacement.
    pub fn meterable(&self) -> bool {
        self.successor.is_none()
            && matches!(
                self.state,
                SubscriptionState::Subscribed | SubscriptionState::UnsubscribePending
            )
    }

    /// `lastUpdateTime`: the last change, or the acceptance.
    pub fn last_update_time(&self) -> OffsetDateTime {
        self.updated_at.unwrap_or(self.created_at)
    }

    pub fn initial_agreement_id(&self) -> &str {
        self.initial_agreement_id
            .as_deref()
            .unwrap_or(&self.agreement_id)
    }

    /// The account that proposed the offer: the channel partner for a CPPO, else the seller.
    pub fn proposer_account_id<'a>(&'a self, seller: &'a str) -> &'a str {
        self.channel_partner
            .as_ref()
            .map_or(seller, |c| c.account_id.as_str())
    }

    pub(super) fn agreement_status(&self) -> &'static str {
        if let Some(next) = &self.successor {
            return next.change.superseded_status();
        }
        match self.state {
            SubscriptionState::Pending | SubscriptionState::Subscribed => "ACTIVE",
            SubscriptionState::Failed => "TERMINATED",
            SubscriptionState::UnsubscribePending | SubscriptionState::Unsubscribed => "CANCELLED",
        }
    }
}

/// A usage record the sandbox accepted (its billing ledger), one per dedup key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeteredRecord {
    pub metering_record_id: String,
    pub product_code: String,
    pub agreement_id: String,
    pub customer_identifier: Option<String>,
    pub customer_aws_account_id: Option<String>,
    pub license_arn: Option<String>,
    pub dimension: String,
    /// The record's timestamp truncated to the hour (AWS de-duplicates per hour).
    pub hour: OffsetDateTime,
    pub timestamp: OffsetDateTime,
    /// Quantity as a normalized decimal string ("5", "0.25").
    pub quantity: String,
    pub usage_allocations: Option<Value>,
    pub accepted_at: OffsetDateTime,
}

/// One API call, for the call log page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallLogEntry {
    pub at: OffsetDateTime,
    pub service: String,
    pub operation: String,
    pub status: u16,
    pub summary: String,
}

/// One HTTP(S) delivery attempt of an SNS message, as the SNS delivery policy runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpDeliveryAttempt {
    pub at: OffsetDateTime,
    pub endpoint: String,
    /// The envelope's MessageId (a duplicate delivery repeats it).
    pub message_id: String,
    /// `Notification` or `SubscriptionConfirmation`.
    pub message_type: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// The endpoint's HTTP status; `None` for a connection error or timeout.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub outcome: DeliveryOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// 2xx: delivered.
    Delivered,
    /// 5xx, 429, timeout or connection error with retries left: retried after `delay_ms`.
    Retrying { delay_ms: u64 },
    /// A 4xx other than 429 (never retried), or the last retry failed: the message is dropped.
    GivenUp,
}

/// An error the sandbox returns on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    /// `ThrottlingException` (SQS: `RequestThrottled`).
    Throttling,
    /// `InternalServiceErrorException` (agreement: `InternalServerException`).
    Internal,
    /// `DisabledApiException` (metering only).
    DisabledApi,
    /// Not an error: the call is carried out at once and answered this many milliseconds
    /// later, past a client's timeout (AWS SDK "Retry behavior": timeouts are transient and
    /// retried, so the operation may have taken effect before the retry).
    LateAnswer(u64),
}

/// SNS lifecycle messages on the subscription topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionAction {
    SubscribeSuccess,
    SubscribeFail,
    UnsubscribePending,
    UnsubscribeSuccess,
}

impl SubscriptionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionAction::SubscribeSuccess => "subscribe-success",
            SubscriptionAction::SubscribeFail => "subscribe-fail",
            SubscriptionAction::UnsubscribePending => "unsubscribe-pending",
            SubscriptionAction::UnsubscribeSuccess => "unsubscribe-success",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct QueuedMessage {
    pub(super) message_id: String,
    pub(super) body: String,
    pub(super) md5: String,
    pub(super) sent_at: OffsetDateTime,
    pub(super) visible_at: OffsetDateTime,
    pub(super) receive_count: u32,
    pub(super) first_receive_at: Option<OffsetDateTime>,
    pub(super) receipt_handle: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Queue {
    pub(super) messages: Vec<QueuedMessage>,
    pub(super) visibility_timeout_secs: i64,
    /// Attributes given to CreateQueue (CreateQueue compares them; DelaySeconds and
    /// ReceiveMessageWaitTimeSeconds apply to messages and receives).
    #[serde(default)]
    pub(super) attributes: BTreeMap<String, String>,
}

/// A new queue has SQS's default 30 s visibility timeout.
impl Default for Queue {
    fn default() -> Self {
        Self {
            messages: Vec::new(),
            visibility_timeout_secs: 30,
            attributes: BTreeMap::new(),
        }
    }
}

impl Queue {
    /// An integer attribute set at creation, else `default`.
    pub(super) fn int_attribute(&self, name: &str, default: i64) -> i64 {
        self.attributes
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct HttpSubscription {
    pub(super) topic_arn: String,
    pub(super) endpoint: String,
    pub(super) token: String,
    pub(super) subscription_arn: String,
    pub(super) confirmed: bool,
    pub(super) confirmation_sent: bool,
    pub(super) backlog: Vec<Map<String, Value>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct SandboxState {
    pub(super) agreements: BTreeMap<String, Agreement>,
    /// token → agreement id
    pub(super) tokens: HashMap<String, String>,
    /// (buyer account, product) → customer identifier
    pub(super) customer_ids: HashMap<String, String>,
    pub(super) ledger: Vec<MeteredRecord>,
    pub(super) queues: BTreeMap<String, Queue>,
    pub(super) subscriptions: Vec<HttpSubscription>,
    #[serde(skip)]
    pub(super) call_log: VecDeque<CallLogEntry>,
    #[serde(skip)]
    pub(super) injected: Vec<(String, InjectedError, u32)>,
    #[serde(skip)]
    pub(super) chaos: ChaosState,
    #[serde(skip)]
    pub(super) http_deliveries: VecDeque<HttpDeliveryAttempt>,
    /// Ledger position by dedup key, so BatchMeterUsage does not scan the whole ledger.
    #[serde(skip)]
    ledger_index: HashMap<LedgerKey, usize>,
    /// Agreement ids by `ci:<CustomerIdentifier>`, `arn:<LicenseArn>` and `acct:<account>`.
    #[serde(skip)]
    agreement_index: HashMap<String, Vec<String>>,
    /// How many agreements `agreement_index` was built from (summing its lists on every
    /// lookup cost O(agreements) per metered record).
    #[serde(skip)]
    agreement_indexed: usize,
}

/// What AWS de-duplicates usage on: product, dimension, hour and the buyer's identity.
pub(crate) type LedgerKey = (
    String,
    String,
    OffsetDateTime,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl SandboxState {
    fn ledger_key(m: &MeteredRecord) -> LedgerKey {
        (
            m.product_code.clone(),
            m.dimension.clone(),
            m.hour,
            m.customer_identifier.clone(),
            m.customer_aws_account_id.clone(),
            m.license_arn.clone(),
        )
    }

    /// The ledger entry under `key`, rebuilding the index after a state file was loaded.
    pub(crate) fn ledger_find(&mut self, key: &LedgerKey) -> Option<&MeteredRecord> {
        if self.ledger_index.len() != self.ledger.len() {
            self.ledger_index = self
                .ledger
                .iter()
                .enumerate()
                .map(|(i, m)| (Self::ledger_key(m), i))
                .collect();
        }
        self.ledger_index.get(key).map(|&i| &self.ledger[i])
    }

    pub(crate) fn ledger_clear(&mut self) {
        self.ledger.clear();
        self.ledger_index.clear();
    }

    pub(crate) fn ledger_push(&mut self, record: MeteredRecord) {
        self.ledger_index
            .insert(Self::ledger_key(&record), self.ledger.len());
        self.ledger.push(record);
    }

    /// Agreements a record may bill, looked up by one of the index keys. The index is rebuilt
    /// whenever the number of agreements changed (purchases, a loaded state file).
    /// Ids only: a record needs a few fields of one of them, not copies of all.
    pub(crate) fn agreements_for(&mut self, key: &str) -> Vec<String> {
        if self.agreement_indexed != self.agreements.len() || self.agreement_index.is_empty() {
            self.agreement_indexed = self.agreements.len();
            self.agreement_index.clear();
            for a in self.agreements.values() {
                for k in [
                    format!("ci:{}", a.customer_identifier),
                    format!("arn:{}", a.license_arn),
                    format!("acct:{}", a.buyer_account_id),
                ] {
                    self.agreement_index
                        .entry(k)
                        .or_default()
                        .push(a.agreement_id.clone());
                }
            }
        }
        self.agreement_index.get(key).cloned().unwrap_or_default()
    }

    /// Appends a message to `queue` (created on first use, 30 s visibility timeout), visible
    /// after `delay`; with delivery chaos, later still and sometimes twice (same MessageId).
    /// Returns the MessageId and the body's MD5.
    pub(super) fn push_queue_message(
        &mut self,
        queue: &str,
        body: String,
        now: OffsetDateTime,
        delay: time::Duration,
    ) -> (String, String) {
        use md5::{Digest, Md5};
        crate::fuzz_seed("sqs_body", body.as_bytes());
        let plan = self.chaos.plan_delivery();
        let q = self.queues.entry(queue.to_owned()).or_default();
        let message_id = uuid::Uuid::new_v4().to_string();
        let md5 = hex::encode(Md5::digest(body.as_bytes()));
        let ms = |m: u64| time::Duration::milliseconds(i64::try_from(m).unwrap_or(i64::MAX));
        let (first, copy) = match plan {
            Some((d, copy)) => (ms(d), copy.map(ms)),
            None => (time::Duration::ZERO, None),
        };
        for extra in std::iter::once(first).chain(copy) {
            q.messages.push(QueuedMessage {
                message_id: message_id.clone(),
                md5: md5.clone(),
                body: body.clone(),
                sent_at: now,
                visible_at: now + delay + extra,
                receive_count: 0,
                first_receive_at: None,
                receipt_handle: None,
            });
        }
        (message_id, md5)
    }
}
