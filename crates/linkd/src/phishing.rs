//! Device-code phishing defences (issue 22; draft-ietf-oauth-cross-device-
//! security §6): a code that arrives inside a link is confirmed by number
//! matching, and the confirmation page states, and an app may require,
//! how near the device is to the person.

use std::net::IpAddr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::codes::UserCode;
use crate::ctx::Ctx;
use crate::limits::same_network;
use crate::store::{Client, SameNetwork, StoreResult};

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
