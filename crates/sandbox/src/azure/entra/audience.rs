//! Who may sign in to an app at an authority: the app registration's `signInAudience` against
//! the authority in the URL (`common`, `organizations`, `consumers` or a tenant) and the
//! account the user signs in with.
//!
//! Codes and texts are Entra's (learn.microsoft.com/entra/identity-platform/reference-error-codes,
//! and the texts as Entra shows them, quoted in field reports such as
//! nextauthjs/next-auth#7448 and MicrosoftDocs/azure-docs#57031 for AADSTS50020, and
//! backendless "Microsoft oAuth Single Tenant" for AADSTS50194). Entra shows these on its own
//! error page ("Sorry, but we're having trouble signing you in"): the app's redirect URI never
//! hears of them, so the sandbox shows a page too.

use crate::azure::config::{ClientApp, PERSONAL_ACCOUNTS_TENANT, SignInAudience, TestUser};

/// The authority part of the URL: `/{tenant}/oauth2/v2.0/authorize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authority<'a> {
    Common,
    Organizations,
    Consumers,
    Tenant(&'a str),
}

impl<'a> Authority<'a> {
    fn parse(tenant: &'a str) -> Self {
        match tenant {
            "common" => Self::Common,
            "organizations" => Self::Organizations,
            "consumers" => Self::Consumers,
            other => Self::Tenant(other),
        }
    }
}

/// Before anyone signs in: can this app use this authority at all?
pub(super) fn check_app(app: &ClientApp, tenant: &str) -> Result<(), String> {
    let single_tenant = app.sign_in_audience == SignInAudience::AzureADMyOrg;
    match Authority::parse(tenant) {
        Authority::Common | Authority::Organizations | Authority::Consumers if single_tenant => {
            Err(format!(
                "AADSTS50194: Application '{}'({}) is not configured as a multi-tenant application. Usage of the /common endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant.",
                app.client_id, app.display_name
            ))
        }
        // A single-tenant app exists in its home directory only.
        Authority::Tenant(t) if single_tenant && !t.eq_ignore_ascii_case(&app.tenant_id) => {
            Err(format!(
                "AADSTS700016: Application with identifier '{}' was not found in the directory '{t}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
                app.client_id
            ))
        }
        _ => Ok(()),
    }
}

/// After the user picked an account: may this account sign in to this app here?
pub(super) fn check_user(app: &ClientApp, tenant: &str, user: &TestUser) -> Result<(), String> {
    let personal = user
        .tenant_id
        .eq_ignore_ascii_case(PERSONAL_ACCOUNTS_TENANT);
    let refuse = |directory: &str| {
        let idp = if personal {
            "live.com".to_owned()
        } else {
            format!("https://sts.windows.net/{}/", user.tenant_id)
        };
        Err(format!(
            "AADSTS50020: User account '{}' from identity provider '{idp}' does not exist in tenant '{directory}' and cannot access the application '{}'({}) in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Azure Active Directory user account.",
            user.email_id().unwrap_or(&user.object_id),
            app.client_id,
            app.display_name
        ))
    };
    let personal_allowed =
        app.sign_in_audience == SignInAudience::AzureADandPersonalMicrosoftAccount;
    match Authority::parse(tenant) {
        // Personal accounts live in the consumer directory ("Microsoft Services").
        Authority::Common if personal && !personal_allowed => refuse("Microsoft Services"),
        Authority::Organizations if personal => refuse("Microsoft Services"),
        Authority::Consumers if !personal || !personal_allowed => refuse("Microsoft Services"),
        Authority::Tenant(t) if !t.eq_ignore_ascii_case(&user.tenant_id) => refuse(t),
        _ if app.sign_in_audience == SignInAudience::AzureADMyOrg
            && !user.tenant_id.eq_ignore_ascii_case(&app.tenant_id) =>
        {
            refuse(&app.tenant_id)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::config::AzureSandboxConfig;

    fn app(audience: SignInAudience) -> ClientApp {
        let c = AzureSandboxConfig::default();
        ClientApp {
            client_id: "app".into(),
            client_secret: "s".into(),
            tenant_id: c.publisher_tenant_id,
            display_name: "App".into(),
            sign_in_audience: audience,
        }
    }

    #[test]
    fn single_tenant_apps_refuse_multi_tenant_authorities_and_other_tenants() {
        let single = app(SignInAudience::AzureADMyOrg);
        for authority in ["common", "organizations", "consumers"] {
            let error = check_app(&single, authority).unwrap_err();
            assert!(error.starts_with("AADSTS50194"), "{error}");
        }
        assert!(
            check_app(&single, "aaaaaaaa-1111-4222-8333-444444444444")
                .unwrap_err()
                .starts_with("AADSTS700016")
        );
        check_app(&single, &single.tenant_id.clone()).unwrap();
        let users = AzureSandboxConfig::default().users;
        // Alice is of another tenant than the app's.
        let error = check_user(&single, &single.tenant_id.clone(), &users[0]).unwrap_err();
        assert!(error.starts_with("AADSTS50020"), "{error}");
        check_app(&app(SignInAudience::AzureADMultipleOrgs), "organizations").unwrap();
    }

    #[test]
    fn personal_accounts_only_where_the_app_and_the_authority_admit_them() {
        let users = AzureSandboxConfig::default().users;
        let dave = users
            .iter()
            .find(|u| u.tenant_id == PERSONAL_ACCOUNTS_TENANT)
            .unwrap();
        let alice = &users[0];
        let orgs = app(SignInAudience::AzureADMultipleOrgs);
        let both = app(SignInAudience::AzureADandPersonalMicrosoftAccount);
        assert!(
            check_user(&orgs, "common", dave)
                .unwrap_err()
                .contains("'live.com'")
        );
        assert!(check_user(&both, "organizations", dave).is_err());
        check_user(&both, "common", dave).unwrap();
        check_user(&both, "consumers", dave).unwrap();
        assert!(check_user(&both, "consumers", alice).is_err());
        check_user(&orgs, "organizations", alice).unwrap();
        check_user(&orgs, &alice.tenant_id.clone(), alice).unwrap();
        assert!(check_user(&orgs, &orgs.tenant_id.clone(), alice).is_err());
    }
}
