//! Buyers of both marketplaces, through marketlink's own pages as a browser would: AWS
//! (landing POST, sign-up, subscribe-success) and Microsoft (landing, Entra sign-in, sign-up,
//! activation by marketlink).

use std::time::Duration;

use marketlink_core::{ExternalRef, Marketplace, Subscription, SubscriptionStatus};
use marketlink_e2e::{azure_land_and_sign_in, browser, browser_trusting};
use marketlink_sandbox::{
    aws::{OfferKind, Purchase, SubscriptionAction},
    azure::PurchaseRequest,
};
use uuid::Uuid;

use crate::stack::{SoakStack, azure_buyer};

pub const CLASSIC: &str = "mlsandboxclassic0000000001";
pub const CONCURRENT: &str = "mlsandboxconcurrent0000002";

/// A subscription as both sides name it.
#[derive(Debug, Clone)]
pub struct Bought {
    pub marketplace: Marketplace,
    /// marketlink's subscription.
    pub ours: Subscription,
    /// AWS: the purchase (agreement, customer, licence); `None` for Microsoft.
    pub aws: Option<Purchase>,
    /// Microsoft: the SaaS subscription id.
    pub azure: Option<Uuid>,
}

/// The id marketlink keeps an AWS purchase under.
fn aws_external_id(purchase: &Purchase) -> String {
    if purchase.product_code == CONCURRENT {
        purchase.license_arn.clone()
    } else {
        ExternalRef::aws_classic_id(&purchase.customer_identifier, &purchase.product_code)
    }
}

async fn sign_up(client: &reqwest::Client, url: &str, email: &str) {
    let done = marketlink_e2e::sign_up(client, url, email).await;
    assert_eq!(
        done.status(),
        reqwest::StatusCode::SEE_OTHER,
        "{email} signs up"
    );
}

/// Waits (60 s at most) until marketlink holds `external_id` in `status`.
async fn wait_status(
    stack: &SoakStack,
    marketplace: &Marketplace,
    external_id: &str,
    status: SubscriptionStatus,
) -> Subscription {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(sub)) = stack
            .store
            .find_subscription(marketplace, external_id)
            .await
            && sub.status == status
        {
            return sub;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{external_id} never became {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Buyer `n` subscribes to `product_code` on AWS and signs up; active once AWS confirms.
pub async fn aws(stack: &SoakStack, product_code: &str, n: usize) -> Bought {
    let account = format!("{:012}", 500_000_000_000_u64 + n as u64);
    let purchase = stack
        .aws
        .purchase(product_code, OfferKind::Subscription, &account)
        .expect("sandbox purchase");
    let client = browser();
    let landed = client
        .post(format!("{}/aws/landing", stack.url))
        .form(&[(
            "x-amzn-marketplace-token",
            purchase.registration_token.as_str(),
        )])
        .send()
        .await
        .expect("landing");
    assert_eq!(
        landed.status(),
        reqwest::StatusCode::SEE_OTHER,
        "AWS landing"
    );
    sign_up(&client, &stack.url, &format!("aws{n}@soak.example")).await;
    stack
        .aws
        .send_subscription_event(&purchase.agreement_id, SubscriptionAction::SubscribeSuccess)
        .await
        .expect("subscribe-success");
    let ours = wait_status(
        stack,
        &Marketplace::AWS,
        &aws_external_id(&purchase),
        SubscriptionStatus::Active,
    )
    .await;
    Bought {
        marketplace: Marketplace::AWS,
        ours,
        aws: Some(purchase),
        azure: None,
    }
}

/// Microsoft buyer `n` buys plan `pro` with `seats`, signs in and up; marketlink activates it.
pub async fn azure(stack: &SoakStack, n: usize, seats: i64) -> Bought {
    let purchase = stack
        .azure
        .purchase(PurchaseRequest {
            offer_id: "contoso-analytics".into(),
            plan_id: "pro".into(),
            quantity: Some(seats),
            buyer_object_id: azure_buyer(n),
            subscription_name: Some(format!("Soak {n}")),
            is_test: false,
        })
        .await
        .expect("sandbox purchase");
    let client = browser_trusting(&stack.azure.ca_pem);
    let back = azure_land_and_sign_in(&client, &purchase.landing_url, &azure_buyer(n)).await;
    assert_eq!(back.status(), reqwest::StatusCode::SEE_OTHER, "signed in");
    sign_up(&client, &stack.url, &format!("azure{n}@soak.example")).await;
    let id = purchase.subscription_id;
    let ours = wait_status(
        stack,
        &Marketplace::AZURE,
        &id.to_string(),
        SubscriptionStatus::Active,
    )
    .await;
    Bought {
        marketplace: Marketplace::AZURE,
        ours,
        aws: None,
        azure: Some(id),
    }
}
