//! The time zone a person reads times in: the browser's (its script sends
//! the IANA name in a cookie), else the one remembered with the account,
//! else UTC, which the page then names. Names come from the person, so
//! only names the tz database knows are taken; anything else falls back.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{self, TimeZone};

use crate::store::Account;

/// Longest IANA zone name linkd takes ("America/Argentina/ComodRivadavia"
/// has 32 characters); a cookie longer than this is no zone.
const MAX_NAME: usize = 64;

/// A zone by its IANA name, checked against the tz database.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

/// A moment as a person in one zone reads it.
pub struct Local {
    pub at: DateTime,
    /// "CET", "EDT", "UTC"; "UTC+03" where the database has no letters.
    pub label: String,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_string(),
            tz: TimeZone::UTC,
        }
    }

    /// The zone named `name` ("Europe/Berlin"), or `None` for a name the
    /// database does not know. The characters are checked before the
    /// lookup, so a hostile cookie never reaches the file system as a
    /// path (`../`, an absolute path).
    pub fn named(name: &str) -> Option<Zone> {
        let plausible = !name.is_empty()
            && name.len() <= MAX_NAME
            && !name.starts_with('/')
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
        if !plausible {
            return None;
        }
        let tz = tz::db().get(name).ok()?;
        Some(Zone {
            name: name.to_string(),
            tz,
        })
    }

    /// The zone remembered with an account, else UTC: for mails, and for
    /// pages when the browser sends none.
    pub fn remembered(name: Option<&str>) -> Zone {
        name.and_then(Zone::named).unwrap_or_else(Zone::utc)
    }

    /// The zone remembered with `account` (its mails are in it).
    pub fn of(account: &Account) -> Zone {
        Zone::remembered(account.time_zone.as_deref())
    }

    /// The IANA name, as it is remembered and sent back.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_utc(&self) -> bool {
        self.name == "UTC"
    }

    /// `ts` (seconds since 1970) in this zone; `None` out of range.
    pub fn local(&self, ts: i64) -> Option<Local> {
        let ts = Timestamp::from_second(ts).ok()?;
        let info = self.tz.to_offset_info(ts);
        let abbreviation = info.abbreviation();
        // The database writes "-03" for zones without a common
        // abbreviation: say it as an offset from UTC.
        let label = if abbreviation.starts_with(['+', '-']) {
            let secs = info.offset().seconds();
            let sign = if secs < 0 { '-' } else { '+' };
            let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
            if m == 0 {
                format!("UTC{sign}{h:02}")
            } else {
                format!("UTC{sign}{h:02}:{m:02}")
            }
        } else {
            abbreviation.to_string()
        };
        Some(Local {
            at: info.offset().to_datetime(ts),
            label,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_are_taken_and_everything_else_falls_back() {
        assert_eq!(
            Zone::named("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert!(Zone::named("America/Argentina/Buenos_Aires").is_some());
        assert!(Zone::named("Etc/GMT+5").is_some());
        for bad in [
            "",
            "Mars/Olympus_Mons",
            "../../../etc/passwd",
            "/etc/localtime",
            "Europe/Berlin\0",
            "Europe/Berlin; Path=/",
            "Europe%2FBerlin",
            "<script>",
            &"A".repeat(65),
        ] {
            assert!(Zone::named(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_compiled_in_database_knows_zones_without_the_system_one() {
        let bundled = tz::TimeZoneDatabase::bundled();
        assert!(bundled.get("Europe/Berlin").is_ok());
        assert!(bundled.get("America/Sao_Paulo").is_ok());
    }

    #[test]
    fn local_times_and_their_labels() {
        // 2025-11-25 18:21 UTC.
        let ts = 1_764_094_860;
        let berlin = Zone::named("Europe/Berlin").unwrap().local(ts).unwrap();
        assert_eq!((berlin.at.hour(), berlin.at.minute()), (19, 21));
        assert_eq!(berlin.label, "CET");
        let summer = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(summer.local(1_751_371_200).unwrap().label, "CEST");
        let sao_paulo = Zone::named("America/Sao_Paulo").unwrap().local(ts).unwrap();
        assert_eq!(
            (sao_paulo.at.hour(), sao_paulo.label.as_str()),
            (15, "UTC-03")
        );
        let kolkata = Zone::named("Asia/Kolkata").unwrap().local(ts).unwrap();
        assert_eq!(kolkata.at.hour(), 23);
        assert_eq!(Zone::utc().local(ts).unwrap().label, "UTC");
        assert!(Zone::utc().local(i64::MAX).is_none());
    }
}
