//! Procurement event messages (gcp.md §2): `{eventId, eventType, providerId, account|entitlement}`
//! with the resource's `id` and `updateTime`; a message is a hint to re-read the resource.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Shared, State, model::Entitlement, pubsub};

/// Publishes an account event (`ACCOUNT_ACTIVE`, `ACCOUNT_DELETED`: S9 enum, S12 traffic).
pub(crate) fn account_event(shared: &Arc<Shared>, state: &mut State, event_type: &str, id: &str) {
    let update_time = state
        .accounts
        .get(id)
        .map(|a| a.update_time.clone())
        .unwrap_or_default();
    let payload = json!({
        "eventId": uuid::Uuid::new_v4().to_string(),
        "eventType": event_type,
        "providerId": shared.config.provider_id,
        "account": {"id": id, "updateTime": update_time},
    });
    pubsub::publish(shared, &mut state.queue, payload);
}

/// Publishes an entitlement event; `extra` adds fields such as `newPlan`, `newOffer`, `orderId`
/// (S5, S7, S12).
pub(crate) fn entitlement_event(
    shared: &Arc<Shared>,
    state: &mut State,
    event_type: &str,
    entitlement: &Entitlement,
    extra: Map<String, Value>,
) {
    let mut body = Map::new();
    body.insert("id".into(), entitlement.id().into());
    body.insert("updateTime".into(), entitlement.update_time.clone().into());
    body.extend(extra);
    let payload = json!({
        "eventId": uuid::Uuid::new_v4().to_string(),
        "eventType": event_type,
        "providerId": shared.config.provider_id,
        "entitlement": body,
    });
    pubsub::publish(shared, &mut state.queue, payload);
}

/// `{key: value}` for `entitlement_event`'s `extra`.
pub(crate) fn fields<const N: usize>(pairs: [(&str, Option<String>); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), Value::String(v))))
        .collect()
}
