//! `linkd user`: create, list, disable, enable and delete people's
//! accounts, hand out password-reset links and confirm addresses.

use std::io::{BufRead, IsTerminal};

use anyhow::bail;

use super::{ADMIN, account_by_email, open};
use crate::accounts;
use crate::clock::{Clock, SystemClock};

fn read_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    Ok(password)
}

pub async fn user_add(database_url: &str, email: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let password = read_password()?;
    let hashing = crate::hashing::HashPool::new(1);
    let account = accounts::sign_up(
        store.as_ref(),
        &hashing,
        email,
        &password,
        SystemClock.now(),
        // The operator hands the account over; the person confirms the
        // address later ("send again" on the account page).
        None,
    )
    .await?;
    println!("added account {} ({})", account.email, account.id);
    Ok(())
}

pub async fn user_list(database_url: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let list = store.list_accounts().await?;
    if list.is_empty() {
        println!("no accounts");
    }
    for a in list {
        let status = if a.disabled { "disabled" } else { "active" };
        println!("{}\t{}\t{status}", a.email, a.id);
    }
    Ok(())
}

/// One account: its status, its password, its identities (issuer and
/// subject, the provider id and the email they last gave).
pub async fn user_show(database_url: &str, email: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let account = account_by_email(store.as_ref(), email).await?;
    let status = if account.disabled {
        "disabled"
    } else {
        "active"
    };
    let password = if account.password_hash.is_empty() {
        "none"
    } else {
        "set"
    };
    println!("email\t{}", account.email);
    println!("id\t{}", account.id);
    println!("status\t{status}");
    println!("password\t{password}");
    let identities = store.list_identities(&account.id).await?;
    if identities.is_empty() {
        println!("identities\tnone");
    }
    for i in identities {
        println!(
            "identity\t{}\t{}\t{}\t{}",
            i.provider,
            i.issuer,
            i.subject,
            i.email.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

pub async fn user_set_disabled(
    database_url: &str,
    email: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let account = account_by_email(store.as_ref(), email).await?;
    store.set_account_disabled(&account.id, disabled).await?;
    if disabled {
        // A disabled person keeps no way in: sessions end and every
        // device is unlinked, so its tokens stop working at once.
        store.delete_sessions(&account.id).await?;
        let unlinked =
            crate::devices::unlink_all(store.as_ref(), &account.id, ADMIN, SystemClock.now())
                .await?;
        println!("{} disabled; {unlinked} device(s) unlinked", account.email);
    } else {
        println!("{} enabled", account.email);
    }
    Ok(())
}

pub async fn user_delete(database_url: &str, email: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let account = account_by_email(store.as_ref(), email).await?;
    store.delete_account(&account.id).await?;
    println!(
        "{} deleted with its devices, tokens and activity",
        account.email
    );
    Ok(())
}

/// Prints a reset link for the operator to hand over (no mail is sent).
pub async fn user_reset_link(
    database_url: &str,
    email: &str,
    public_url: &str,
) -> anyhow::Result<()> {
    let base = public_url.trim_end_matches('/');
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        bail!("--public-url must start with https:// or http://");
    }
    let store = open(database_url).await?;
    let account = account_by_email(store.as_ref(), email).await?;
    if account.disabled {
        bail!("{} is disabled; enable it first", account.email);
    }
    let link =
        crate::recovery::create_reset_link(store.as_ref(), &account, SystemClock.now(), base, None)
            .await?;
    println!("{link}");
    eprintln!(
        "valid for {} minutes, once; hand it to {} only",
        crate::recovery::RESET_LINK_SECS / 60,
        account.email
    );
    Ok(())
}

/// Marks an account's address confirmed, as its verification link would:
/// for an operator who checked it another way (or runs linkd without mail).
pub async fn user_verify_email(database_url: &str, email: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let account = account_by_email(store.as_ref(), email).await?;
    let activity = crate::store::Activity {
        account_id: account.id.clone(),
        kind: crate::store::ActivityKind::EmailVerified,
        client_id: String::new(),
        app_name: account.email.clone(),
        device: None,
        ip: ADMIN.into(),
        at: SystemClock.now(),
    };
    if store.mark_email_verified(&activity).await? {
        println!("confirmed the address {}", account.email);
    } else {
        println!("{} was confirmed already", account.email);
    }
    Ok(())
}
