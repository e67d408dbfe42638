//! An operator's password hash never reaches a log. (Kept out of the session's tests so that
//! the session module does not reach into the admin module that uses it.)

use marketlink_web::admin::AdminUser;

#[test]
fn the_password_hash_never_prints() {
    let admin = AdminUser {
        email: "ops@example.com".into(),
        password_hash: "$argon2id$v=19$secret-hash".into(),
    };
    assert!(!format!("{admin:?}").contains("secret-hash"));
}
