//! `marketlink admin hash-password`: the hash an operator's `[admin] users` entry holds.

use anyhow::Context;

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Read a password on standard input and print its Argon2id hash for `[admin] users`.
    HashPassword,
}

pub async fn admin(action: AdminCommand) -> anyhow::Result<()> {
    match action {
        AdminCommand::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            if let Err(message) = marketlink_web::password::check_strength(&password) {
                anyhow::bail!(message);
            }
            println!("{}", marketlink_web::password::hash(password).await?);
            Ok(())
        }
    }
}
