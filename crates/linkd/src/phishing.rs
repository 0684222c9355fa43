//! Device-code phishing defences (issue 22; draft-ietf-oauth-cross-device-
//! security §6): a code that arrives inside a link is confirmed by number
//! matching; the confirmation page states, and an app may require, how
//! near the device is to the person; and "I didn't start this" reports a
//! code, and blocks a requesting network that reports keep naming.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::codes::UserCode;
use crate::ctx::Ctx;
use crate::device_flow::PendingAuthorization;
use crate::limits::same_network;
use crate::store::{
    Account, BlockRule, Client, DecisionRecord, Event, LinkReport, NetworkBlock, SameNetwork,
    Store, StoreResult, Timestamp,
};
use crate::webhooks::{self, ReportVia};

/// How many codes a person picks from: the device's and two decoys. One
/// in three is the chance of a blind pick; a wrong pick ends the code.
pub const CHOICES: usize = 3;

/// The codes shown to a person who arrived with a code in the link: the
/// device's and decoys, in an order that hides which is which.
///
/// Decoys and order come from the session's secret and the code, so a
/// reload shows the same three (new decoys each time would give the one
/// code that stays away) and no one without the session can predict
/// them. A decoy is never a code of any stored authorization, so the page
/// shows no one else's live code and a decoy picked by mistake ends only
/// this code.
pub async fn choices(
    ctx: &Ctx<'_>,
    session_secret: &str,
    code: &UserCode,
) -> StoreResult<Vec<UserCode>> {
    let seed: [u8; 32] = Sha256::new()
        .chain_update(b"linkd number matching\0")
        .chain_update(session_secret.as_bytes())
        .chain_update(b"\0")
        .chain_update(code.as_str().as_bytes())
        .finalize()
        .into();
    let mut rng = StdRng::from_seed(seed);
    let mut codes = vec![code.clone()];
    while codes.len() < CHOICES {
        let decoy = UserCode::generate(&mut rng);
        if codes.contains(&decoy)
            || ctx
                .store
                .get_device_authorization_by_user_code(decoy.as_str())
                .await?
                .is_some()
        {
            continue;
        }
        codes.push(decoy);
    }
    let at = rng.gen_range(0..CHOICES);
    codes.swap(0, at);
    Ok(codes)
}

/// What a person's pick from [`choices`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The device's code: the person has the device in front of them.
    Right,
    /// One of the decoys: the person does not see the device's code.
    Wrong,
    /// Not one of the codes the page showed: the form was changed.
    Tampered,
}

/// Judges a pick against the codes the page showed for this session.
pub async fn judge_pick(
    ctx: &Ctx<'_>,
    session_secret: &str,
    code: &UserCode,
    picked: &str,
) -> StoreResult<Pick> {
    // The buttons send codes in the display form; anything else did not
    // come from the page.
    let Ok(picked) = UserCode::parse(picked) else {
        return Ok(Pick::Tampered);
    };
    let shown = choices(ctx, session_secret, code).await?;
    Ok(if !shown.contains(&picked) {
        Pick::Tampered
    } else if picked == *code {
        Pick::Right
    } else {
        Pick::Wrong
    })
}

/// How a device's request relates to the person approving it, for the
/// confirmation page's plain words and the app's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proximity {
    /// Whether the device asked from this browser's network: under the
    /// app's rule if it has one, else the same /24 (IPv4) or /64 (IPv6).
    /// `None` when the stored address does not parse (rows from before
    /// addresses were checked).
    pub same_network: Option<bool>,
    /// The app's rule, if it requires the same network.
    pub required: Option<SameNetwork>,
}

impl Proximity {
    pub fn of(client: &Client, requested_ip: &str, browser_ip: IpAddr) -> Proximity {
        let required = client.same_network;
        let same = requested_ip
            .parse::<IpAddr>()
            .ok()
            .map(|device| match required {
                Some(rule) => rule.holds(device, browser_ip),
                None => same_network(device, browser_ip),
            });
        Proximity {
            same_network: same,
            required,
        }
    }

    /// Whether the app's rule lets this browser approve: always without a
    /// rule; with one, only from the device's network.
    pub fn allows_approval(&self) -> bool {
        self.required.is_none() || self.same_network == Some(true)
    }
}

/// How far back reports count towards a block, in seconds.
pub const REPORT_WINDOW_SECS: i64 = 3600;
/// How long a block lasts, in seconds: no shorter than the window, so
/// the reports behind a block have stopped counting when it ends.
pub const BLOCK_SECS: i64 = 3600;
/// Networks one account's reports may count towards blocking per window;
/// past them its reports still deny their codes. With distinct accounts
/// counted, one person (or one attacker's account) cannot block a
/// network alone, nor spread blocks over many (SECURITY.md).
pub const REPORTS_PER_ACCOUNT: u32 = 3;
/// How often an instance re-reads the blocks every instance made.
const REREAD_BLOCKS: Duration = Duration::from_secs(5);

/// The network a report names: the device's address under the default
/// same-network rule (an IPv4 /24, an IPv6 /56), the addresses one home
/// or office is likely to ask from.
pub fn requesting_network(ip: IpAddr) -> String {
    SameNetwork::DEFAULT.prefix(ip)
}

/// The operator's rule (`--network-block-reports`).
pub fn block_rule(config: &crate::Config) -> BlockRule {
    BlockRule {
        threshold: config.network_block_reports,
        per_account: REPORTS_PER_ACCOUNT,
        window: REPORT_WINDOW_SECS,
        block_secs: BLOCK_SECS,
    }
}

/// "I didn't start this" on a pending code: it is denied with `record`
/// (the person's activity), the report is stored and sent to the
/// operator (`link.reported`), and when it is the report that makes the
/// requesting network cross the threshold, the network is blocked: its
/// pending codes denied (their devices get `access_denied`), new ones
/// refused until the block ends, and `network.blocked` sent once. False
/// when the code was no longer pending.
pub async fn report(
    ctx: &Ctx<'_>,
    pending: &PendingAuthorization,
    account: &Account,
    reporting_ip: &str,
    mut record: DecisionRecord,
) -> StoreResult<bool> {
    let device_ip = pending.auth.requested_ip.parse::<IpAddr>().ok();
    let browser_ip = reporting_ip.parse::<IpAddr>().ok();
    // Stored addresses are ones linkd parsed; a row that does not parse
    // is reported under its text and blocks nothing.
    let network = device_ip.map_or_else(|| pending.auth.requested_ip.clone(), requesting_network);
    // A person on the device's own network is in the room with it, and so
    // may be whoever asked for it: such a report denies the code but does
    // not count towards blocking the network it came from.
    let eligible = match (device_ip, browser_ip) {
        (Some(device), Some(browser)) => !SameNetwork::DEFAULT.holds(device, browser),
        _ => false,
    };
    record.outbox.push(
        webhooks::Event::link_reported(
            &webhooks::Report {
                account_id: &account.id,
                client_id: &pending.client.client_id,
                app_name: &pending.client.name,
                requesting_ip: Some(&pending.auth.requested_ip),
                requesting_network: device_ip.is_some().then_some(network.as_str()),
                reporting_ip,
                via: ReportVia::Confirmation,
            },
            ctx.now,
        )
        .to_outbox(),
    );
    let in_network = |requested: &str| {
        requested
            .parse::<IpAddr>()
            .is_ok_and(|ip| device_ip.is_some_and(|d| SameNetwork::DEFAULT.holds(d, ip)))
    };
    let blocked_event = |reports: i64, until: Timestamp| {
        webhooks::Event::network_blocked(&network, reports, until, ctx.now).to_outbox()
    };
    let outcome = ctx
        .store
        .report_device_authorization(
            &pending.auth.id,
            &account.id,
            ctx.now,
            &record,
            &LinkReport {
                network: &network,
                client_id: &pending.client.client_id,
                reporting_ip,
                eligible,
                rule: block_rule(ctx.config),
                in_network: &in_network,
                blocked_event: &blocked_event,
            },
        )
        .await?;
    let Some(outcome) = outcome else {
        return Ok(false);
    };
    ctx.outbox.wake();
    crate::telemetry::link_reported("confirmation", outcome.counted);
    tracing::info!(
        account = %account.id,
        client_id = %pending.client.client_id,
        network = %network,
        counted = outcome.counted,
        "a person reported a code they did not start"
    );
    if let Some(block) = &outcome.blocked {
        crate::telemetry::network_blocked();
        ctx.limits.blocked_networks.note(block);
        tracing::warn!(
            network = %block.network,
            reports = block.reports,
            until = block.until,
            denied = outcome.denied.len(),
            "reports blocked a requesting network"
        );
    }
    // The devices of the denied codes hear it at their next poll; a
    // device waiting on its poll hears it now (a lost wake-up only
    // delays it to that poll).
    for id in &outcome.denied {
        let event = Event::Decided {
            authorization_id: id.clone(),
        };
        if let Err(e) = ctx.store.publish(event).await {
            tracing::warn!(error = %e, "could not publish a denial");
            break;
        }
    }
    Ok(true)
}

/// The blocks in force, as this instance last read them from the store:
/// new device authorizations from a blocked network are refused until
/// its block ends. Re-read every few seconds, so that a block made on
/// another instance (or before a restart) holds here too, at the cost of
/// one small query per interval rather than one per request.
#[derive(Default)]
pub struct BlockedNetworks {
    seen: Mutex<Option<(Instant, HashMap<String, Timestamp>)>>,
}

impl BlockedNetworks {
    /// Until when `ip`'s network is blocked at `now`, if it is.
    pub async fn blocked_until(
        &self,
        store: &dyn Store,
        ip: IpAddr,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        let network = requesting_network(ip);
        let cached = self
            .lock()
            .as_ref()
            .filter(|(read_at, _)| read_at.elapsed() < REREAD_BLOCKS)
            .map(|(_, blocks)| blocks.get(&network).copied());
        let until = match cached {
            Some(until) => until,
            None => {
                let blocks: HashMap<String, Timestamp> = store
                    .network_blocks(now)
                    .await?
                    .into_iter()
                    .map(|b| (b.network, b.until))
                    .collect();
                let until = blocks.get(&network).copied();
                *self.lock() = Some((Instant::now(), blocks));
                until
            }
        };
        Ok(until.filter(|until| *until > now))
    }

    /// A block this instance made holds here at once.
    pub fn note(&self, block: &NetworkBlock) {
        if let Some((_, blocks)) = self.lock().as_mut() {
            blocks.insert(block.network.clone(), block.until);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, HashMap<String, Timestamp>)>> {
        // A panic while holding it left a map, which is still usable.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(rule: Option<SameNetwork>) -> Client {
        Client {
            client_id: "tv".into(),
            name: "TV".into(),
            secret_hash: None,
            scopes: "openid".into(),
            device_flow_enabled: true,
            redirect_uris: String::new(),
            code_flow_enabled: true,
            refresh_enabled: true,
            require_dpop: false,
            prefilled_links: true,
            same_network: rule,
            created_at: 0,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn proximity_under_the_default_and_an_apps_rule() {
        let open = client(None);
        let p = Proximity::of(&open, "192.0.2.7", ip("192.0.2.200"));
        assert_eq!(p.same_network, Some(true));
        assert!(p.allows_approval());
        let p = Proximity::of(&open, "198.51.100.7", ip("192.0.2.200"));
        assert_eq!(p.same_network, Some(false));
        assert!(p.allows_approval(), "no rule: warned, not refused");

        let tv = client(Some(SameNetwork::DEFAULT));
        assert!(Proximity::of(&tv, "192.0.2.7", ip("192.0.2.200")).allows_approval());
        assert!(!Proximity::of(&tv, "192.0.3.7", ip("192.0.2.200")).allows_approval());
        assert!(!Proximity::of(&tv, "not an address", ip("192.0.2.200")).allows_approval());
        // IPv6: one household's /56.
        assert!(
            Proximity::of(&tv, "2001:db8:0:1200::1", ip("2001:db8:0:12ff::9")).allows_approval()
        );
        assert!(
            !Proximity::of(&tv, "2001:db8:0:1300::1", ip("2001:db8:0:12ff::9")).allows_approval()
        );
        // An IPv4-mapped address is its IPv4 address; two families are two networks.
        assert!(Proximity::of(&tv, "::ffff:192.0.2.7", ip("192.0.2.9")).allows_approval());
        assert!(!Proximity::of(&tv, "2001:db8::1", ip("192.0.2.9")).allows_approval());

        let strict = client(Some(SameNetwork { v4: 32, v6: 128 }));
        assert!(!Proximity::of(&strict, "127.0.0.2", ip("127.0.0.1")).allows_approval());
        assert!(Proximity::of(&strict, "127.0.0.1", ip("127.0.0.1")).allows_approval());
    }

    #[test]
    fn a_report_names_the_devices_24_or_56() {
        assert_eq!(requesting_network(ip("203.0.113.77")), "203.0.113.0/24");
        assert_eq!(
            requesting_network(ip("::ffff:203.0.113.77")),
            "203.0.113.0/24"
        );
        assert_eq!(
            requesting_network(ip("2001:db8:0:12ab:1:2:3:4")),
            "2001:db8:0:1200::/56"
        );
        let strict = SameNetwork { v4: 32, v6: 128 };
        assert_eq!(strict.prefix(ip("192.0.2.1")), "192.0.2.1/32");
    }

    #[test]
    fn same_network_rules_parse() {
        assert_eq!(
            SameNetwork::parse("24,56").unwrap(),
            SameNetwork { v4: 24, v6: 56 }
        );
        assert_eq!(
            SameNetwork::parse("32/64").unwrap(),
            SameNetwork { v4: 32, v6: 64 }
        );
        for bad in ["24", "0,56", "33,56", "24,0", "24,129", "a,b", ""] {
            assert!(SameNetwork::parse(bad).is_err(), "{bad}");
        }
    }
}
