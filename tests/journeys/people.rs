//! Inviting people into a tenant: owners invite, the link works once, members only look.

use marketlink_e2e::{aws_buyer_signs_up, browser, csrf, start};
use marketlink_sandbox::aws::OfferKind;
use reqwest::StatusCode;

#[tokio::test]
async fn an_owner_invites_a_member_who_can_look_but_not_change() {
    let stack = start(|_| {}).await;
    let owner = browser();
    aws_buyer_signs_up(
        &stack,
        &owner,
        OfferKind::Subscription,
        "444455556666",
        "owner@acme.example",
    )
    .await;
    let people = owner
        .get(format!("{}/account/users", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(people.contains("owner@acme.example") && people.contains("Invite someone"));
    let bad = owner
        .post(format!("{}/account/users/invite", stack.app_url))
        .form(&[
            ("csrf", csrf(&people).as_str()),
            ("email", "not-an-email"),
            ("role", "member"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let invited = owner
        .post(format!("{}/account/users/invite", stack.app_url))
        .form(&[
            ("csrf", csrf(&people).as_str()),
            ("email", "Dev@Acme.example"),
            ("role", "member"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(invited.status(), StatusCode::CREATED);
    let html = invited.text().await.unwrap();
    let start = html.find("/invite/").expect("the link is shown");
    let token: String = html[start + "/invite/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let link = format!("{}/invite/{token}", stack.app_url);

    let member = browser();
    let form = member
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("dev@acme.example"));
    let weak = member
        .post(&link)
        .form(&[
            ("csrf", csrf(&form).as_str()),
            ("name", "Dev"),
            ("password", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let joined = member
        .post(&link)
        .form(&[
            ("csrf", csrf(&form).as_str()),
            ("name", "Dev"),
            ("password", "correct-horse-battery"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), StatusCode::SEE_OTHER);
    let account = member
        .get(format!("{}/account", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        account.contains("Contoso Analytics"),
        "the member sees the tenant's subscriptions"
    );

    // The link works once.
    let again = browser().get(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::GONE);

    // A member cannot invite.
    let member_people = member
        .get(format!("{}/account/users", stack.app_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!member_people.contains("Invite someone"));
    let refused = member
        .post(format!("{}/account/users/invite", stack.app_url))
        .form(&[
            // The member's page has no invite form; the account page's token is the session's.
            ("csrf", csrf(&account).as_str()),
            ("email", "x@acme.example"),
            ("role", "admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let (user, _) = stack
        .store
        .find_user_by_email("dev@acme.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.role, marketlink_core::Role::Member);
}
