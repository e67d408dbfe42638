//! Inviting people into a tenant: owners invite, the link works once, members only look.

use marketlink_core::Role;
use marketlink_e2e::{Stack, aws_buyer_signs_up, browser, csrf, start};
use marketlink_sandbox::aws::OfferKind;
use reqwest::{Client, StatusCode};

async fn page(client: &Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Posts the invitation form as `owner`; the response.
async fn post_invite(stack: &Stack, owner: &Client, email: &str, role: &str) -> reqwest::Response {
    let people = page(owner, format!("{}/account/users", stack.app_url)).await;
    owner
        .post(format!("{}/account/users/invite", stack.app_url))
        .form(&[
            ("csrf", csrf(&people).as_str()),
            ("email", email),
            ("role", role),
        ])
        .send()
        .await
        .unwrap()
}

/// `owner` invites `email` with `role`; the one-time link shown.
pub(crate) async fn invite(stack: &Stack, owner: &Client, email: &str, role: &str) -> String {
    let invited = post_invite(stack, owner, email, role).await;
    assert_eq!(invited.status(), StatusCode::CREATED);
    let html = invited.text().await.unwrap();
    let start = html.find("/invite/").expect("the link is shown");
    let token: String = html[start + "/invite/".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("{}/invite/{token}", stack.app_url)
}

/// Accepts the invitation at `link` with `password`, in `person`'s browser.
async fn accept(person: &Client, link: &str, password: &str) -> StatusCode {
    let form = page(person, link.to_owned()).await;
    person
        .post(link)
        .form(&[
            ("csrf", csrf(&form).as_str()),
            ("name", "Someone"),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .status()
}

/// `owner` invites `email` with `role`; the invited person accepts in a browser of their own.
pub(crate) async fn invite_and_join(
    stack: &Stack,
    owner: &Client,
    email: &str,
    role: &str,
) -> Client {
    let link = invite(stack, owner, email, role).await;
    let person = browser();
    assert_eq!(
        accept(&person, &link, "correct-horse-battery").await,
        StatusCode::SEE_OTHER
    );
    person
}

/// Posts a role change (`Some`) or removal (`None`) of `target` as `actor`.
async fn change(
    stack: &Stack,
    actor: &Client,
    target: &str,
    role: Option<&str>,
) -> (StatusCode, String) {
    // The account page always carries the session's CSRF token (the sign-out form).
    let account = page(actor, format!("{}/account", stack.app_url)).await;
    let id = match stack.store.find_user_by_email(target).await.unwrap() {
        Some((user, _)) => user.id.0.to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    };
    let token = csrf(&account);
    let request = match role {
        Some(role) => actor
            .post(format!("{}/account/users/{id}/role", stack.app_url))
            .form(&[("csrf", token.as_str()), ("role", role)]),
        None => actor
            .post(format!("{}/account/users/{id}/remove", stack.app_url))
            .form(&[("csrf", token.as_str())]),
    };
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn role_of(stack: &Stack, email: &str) -> Option<Role> {
    stack
        .store
        .find_user_by_email(email)
        .await
        .unwrap()
        .map(|(user, _)| user.role)
}

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
    let people = page(&owner, format!("{}/account/users", stack.app_url)).await;
    assert!(people.contains("owner@acme.example") && people.contains("Invite someone"));
    let bad = post_invite(&stack, &owner, "not-an-email", "member").await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let link = invite(&stack, &owner, "Dev@Acme.example", "member").await;

    let member = browser();
    assert!(
        page(&member, link.clone())
            .await
            .contains("dev@acme.example")
    );
    assert_eq!(
        accept(&member, &link, "short").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        accept(&member, &link, "correct-horse-battery").await,
        StatusCode::SEE_OTHER
    );
    let account = page(&member, format!("{}/account", stack.app_url)).await;
    assert!(
        account.contains("Contoso Analytics"),
        "the member sees the tenant's subscriptions"
    );

    // The link works once.
    let again = browser().get(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::GONE);

    // A member cannot invite.
    let member_people = page(&member, format!("{}/account/users", stack.app_url)).await;
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

#[tokio::test]
async fn owners_and_admins_change_roles_and_remove_people_within_their_rights() {
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
    let dev = invite_and_join(&stack, &owner, "dev@acme.example", "member").await;
    let ops = invite_and_join(&stack, &owner, "ops@acme.example", "member").await;

    // The owner sees controls; a member sees none and is refused.
    let people = page(&owner, format!("{}/account/users", stack.app_url)).await;
    assert!(people.contains("Save role") && people.contains("Remove dev@acme.example"));
    let members_view = page(&dev, format!("{}/account/users", stack.app_url)).await;
    assert!(!members_view.contains("Save role"));
    let (status, body) = change(&stack, &dev, "ops@acme.example", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("only owners and admins"));
    assert_eq!(
        role_of(&stack, "ops@acme.example").await,
        Some(Role::Member)
    );

    // Nobody changes themselves, and a bad role is named.
    let (status, body) = change(&stack, &owner, "owner@acme.example", Some("member")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("your own role"));
    let (status, body) = change(&stack, &owner, "dev@acme.example", Some("emperor")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("emperor"));

    // The owner makes dev an admin; an admin manages members but never owners.
    let (status, body) = change(&stack, &owner, "dev@acme.example", Some("admin")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("dev@acme.example is now admin"));
    assert_eq!(role_of(&stack, "dev@acme.example").await, Some(Role::Admin));
    let (status, _) = change(&stack, &dev, "owner@acme.example", Some("member")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = change(&stack, &dev, "ops@acme.example", Some("owner")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = change(&stack, &dev, "ops@acme.example", Some("admin")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(role_of(&stack, "ops@acme.example").await, Some(Role::Admin));

    // Removal ends the removed person's session at once.
    assert!(
        page(&ops, format!("{}/account", stack.app_url))
            .await
            .contains("Contoso Analytics")
    );
    let (status, body) = change(&stack, &dev, "ops@acme.example", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("ops@acme.example was removed"));
    assert_eq!(role_of(&stack, "ops@acme.example").await, None);
    let after = ops
        .get(format!("{}/account", stack.app_url))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()["location"], "/signin");

    // Someone of another tenant (or no one) is simply not found.
    let stranger = browser();
    aws_buyer_signs_up(
        &stack,
        &stranger,
        OfferKind::Subscription,
        "777788889999",
        "boss@other.example",
    )
    .await;
    let (status, _) = change(&stack, &owner, "boss@other.example", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        role_of(&stack, "boss@other.example").await,
        Some(Role::Owner)
    );
    let (status, _) = change(&stack, &owner, "nobody@acme.example", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
