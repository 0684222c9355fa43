//! The words people read, in one catalog per language (`locales/*.json`,
//! embedded in the binary), and the choice of language from a browser's
//! `Accept-Language` header (RFC 9110 §12.5.4).
//!
//! To add a string, add its key to every file in `locales/`; the unit tests
//! fail when a language lacks a key or a key's `{placeholders}` differ.
//! To add a language, add a file, a [`Lang`] variant and a line in
//! [`CATALOG_SOURCES`].

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::zone::Zone;

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    De,
}

/// Each language's catalog, English first: it is the fallback.
const CATALOG_SOURCES: &[(Lang, &str)] = &[
    (Lang::En, include_str!("../locales/en.json")),
    (Lang::De, include_str!("../locales/de.json")),
];

type Catalog = HashMap<String, String>;

/// Parsed once. A catalog that does not parse is a build defect the unit
/// tests catch; at run time it leaves that language empty so its pages
/// fall back to English instead of failing.
static CATALOGS: LazyLock<HashMap<Lang, Catalog>> = LazyLock::new(|| {
    CATALOG_SOURCES
        .iter()
        .map(|(lang, source)| {
            let catalog = serde_json::from_str::<Catalog>(source).unwrap_or_else(|e| {
                tracing::error!(lang = lang.tag(), error = %e, "catalog does not parse");
                Catalog::new()
            });
            (*lang, catalog)
        })
        .collect()
});

impl Lang {
    pub const ALL: &'static [Lang] = &[Lang::En, Lang::De];
    pub const DEFAULT: Lang = Lang::En;

    /// The BCP 47 tag, as `<html lang>` and `Content-Language` want it.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Lang> {
        Lang::ALL
            .iter()
            .copied()
            .find(|l| l.tag().eq_ignore_ascii_case(tag))
    }

    /// Picks the language a browser prefers among the ones linkd has.
    ///
    /// Each entry is `range[;q=weight]`. A range names a language by its
    /// primary subtag (`de-CH` asks for German, which Swiss readers read),
    /// `*` stands for every language the header does not name, and `q=0`
    /// rules a language out. The highest weight wins; a tie goes to the
    /// entry listed first. Nothing acceptable means English.
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        // (primary subtag or "*", weight in thousandths); at most 32
        // entries, which bounds the work a hostile header can cause.
        let entries: Vec<(&str, u16)> = accept_language
            .unwrap_or("")
            .split(',')
            .take(32)
            .filter_map(|entry| {
                let mut parts = entry.split(';');
                let range = parts.next()?.trim();
                let primary = range.split('-').next()?;
                (!primary.is_empty()).then_some(())?;
                Some((primary, parse_weight(parts)?))
            })
            .collect();
        // Each language's weight and the position of the entry that gave it.
        let weigh = |lang: Lang| -> Option<(u16, usize)> {
            let named = entries
                .iter()
                .enumerate()
                .filter(|(_, (p, _))| p.eq_ignore_ascii_case(lang.tag()))
                .map(|(i, (_, w))| (*w, i))
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            named.or_else(|| {
                entries
                    .iter()
                    .position(|(p, _)| *p == "*")
                    .map(|i| (entries[i].1, i))
            })
        };
        let mut best: Option<(u16, usize, Lang)> = None;
        for &lang in Lang::ALL {
            let Some((weight, position)) = weigh(lang).filter(|(w, _)| *w > 0) else {
                continue;
            };
            let wins = match best {
                None => true,
                Some((w, p, _)) => weight > w || (weight == w && position < p),
            };
            if wins {
                best = Some((weight, position, lang));
            }
        }
        best.map_or(Lang::DEFAULT, |(_, _, lang)| lang)
    }

    /// The text for `key`: this language's, else English, else the key
    /// itself (so a missing translation shows rather than breaking the
    /// page).
    pub fn t(self, key: &str) -> &str {
        let catalogs: &'static HashMap<Lang, Catalog> = &CATALOGS;
        let found = catalogs
            .get(&self)
            .and_then(|c| c.get(key))
            .or_else(|| catalogs.get(&Lang::DEFAULT).and_then(|c| c.get(key)));
        match found {
            Some(text) => text,
            None => {
                tracing::warn!(key, lang = self.tag(), "no text for this key");
                key
            }
        }
    }

    /// The text for `key` with each `{name}` replaced by its argument.
    pub fn fmt(self, key: &str, args: &[(&str, &str)]) -> String {
        interpolate(self.t(key), |name| {
            args.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        })
    }

    /// "just now", "3 minutes ago", "2 days ago".
    pub fn ago(self, secs: i64) -> String {
        let n = |v: i64| v.to_string();
        match secs {
            s if s < 60 => self.t("time.just_now").to_string(),
            s if s < 120 => self.t("time.minute_ago").to_string(),
            s if s < 3600 => self.fmt("time.minutes_ago", &[("n", &n(s / 60))]),
            s if s < 7200 => self.t("time.hour_ago").to_string(),
            s if s < 86_400 => self.fmt("time.hours_ago", &[("n", &n(s / 3600))]),
            s if s < 2 * 86_400 => self.t("time.day_ago").to_string(),
            s => self.fmt("time.days_ago", &[("n", &n(s / 86_400))]),
        }
    }

    /// "25 Nov 2025, 18:21 UTC" in English, "25. Nov. 2025, 18:21 UTC" in
    /// German (mails and the terminal, which know no reader's zone).
    /// Empty for a timestamp out of range.
    pub fn datetime(self, ts: i64) -> String {
        self.datetime_in(ts, &Zone::utc(), None)
    }

    /// `ts` in `zone`, labelled with it ("25 Nov 2025, 19:21 CET"). With
    /// `now`, a time of the reader's today or yesterday says so ("today,
    /// 19:21 CET"), as people read their own calendar days.
    pub fn datetime_in(self, ts: i64, zone: &Zone, now: Option<i64>) -> String {
        let Some(local) = zone.local(ts) else {
            return String::new();
        };
        let t = local.at;
        let hour = format!("{:02}", t.hour());
        let minute = format!("{:02}", t.minute());
        let clock = [
            ("hour", hour.as_str()),
            ("minute", minute.as_str()),
            ("zone", local.label.as_str()),
        ];
        if let Some(today) = now.and_then(|now| zone.local(now)).map(|l| l.at.date()) {
            if t.date() == today {
                return self.fmt("time.today", &clock);
            }
            if today.yesterday().is_ok_and(|y| y == t.date()) {
                return self.fmt("time.yesterday", &clock);
            }
        }
        let month_index = usize::try_from(t.month() - 1).unwrap_or_default();
        let month = self
            .t("time.months")
            .split(' ')
            .nth(month_index)
            .unwrap_or_default();
        let (day, year) = (t.day().to_string(), t.year().to_string());
        self.fmt(
            "time.datetime",
            &[
                ("day", &day),
                ("month", month),
                ("year", &year),
                clock[0],
                clock[1],
                clock[2],
            ],
        )
    }

    /// "14:52 CET": a time within the next hour or so, such as when a
    /// pause ends.
    pub fn clock(self, ts: i64, zone: &Zone) -> String {
        let Some(local) = zone.local(ts) else {
            return String::new();
        };
        self.fmt(
            "time.clock",
            &[
                ("hour", &format!("{:02}", local.at.hour())),
                ("minute", &format!("{:02}", local.at.minute())),
                ("zone", &local.label),
            ],
        )
    }
}

/// `q=0.8` → 800. `None` for a malformed weight, which drops the entry.
fn parse_weight<'a>(params: impl Iterator<Item = &'a str>) -> Option<u16> {
    let mut weight = 1000;
    for param in params {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("q") {
            continue;
        }
        let value = value.trim();
        // RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
        let (int, frac) = value.split_once('.').unwrap_or((value, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let frac_value: u16 = format!("{frac:0<3}").parse().ok()?;
        weight = match int {
            "0" => frac_value,
            "1" if frac_value == 0 => 1000,
            _ => return None,
        };
    }
    Some(weight)
}

/// Replaces `{name}` with `lookup(name)`; unknown names stay as written.
/// One pass, so an argument containing braces is never expanded again.
pub fn interpolate<'a>(text: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match lookup(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A message for a person: a catalog key with its arguments, or words
/// already written (so `"…".into()` still works where no key exists yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Key(&'static str, Vec<(&'static str, String)>),
    Plain(String),
}

impl Text {
    pub fn key(key: &'static str) -> Text {
        Text::Key(key, Vec::new())
    }

    pub fn with(key: &'static str, args: Vec<(&'static str, String)>) -> Text {
        Text::Key(key, args)
    }

    pub fn in_lang(&self, lang: Lang) -> String {
        match self {
            Text::Key(key, args) => {
                let borrowed: Vec<(&str, &str)> =
                    args.iter().map(|(n, v)| (*n, v.as_str())).collect();
                lang.fmt(key, &borrowed)
            }
            Text::Plain(s) => s.clone(),
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::Plain(s)
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::Plain(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(lang: Lang) -> Catalog {
        let source = CATALOG_SOURCES
            .iter()
            .find(|(l, _)| *l == lang)
            .map(|(_, s)| *s)
            .unwrap();
        serde_json::from_str(source).unwrap()
    }

    fn placeholders(text: &str) -> Vec<String> {
        let mut names: Vec<String> = text
            .split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_language_has_every_key_with_the_same_placeholders() {
        let english = parsed(Lang::En);
        for &lang in Lang::ALL {
            let other = parsed(lang);
            for (key, text) in &english {
                let translated = other
                    .get(key)
                    .unwrap_or_else(|| panic!("{} lacks {key}", lang.tag()));
                assert_eq!(
                    placeholders(text),
                    placeholders(translated),
                    "{}: {key}",
                    lang.tag()
                );
                assert!(!translated.trim().is_empty(), "{}: {key}", lang.tag());
            }
            for key in other.keys() {
                assert!(english.contains_key(key), "{} has extra {key}", lang.tag());
            }
            assert_eq!(
                other["time.months"].split(' ').count(),
                12,
                "{}",
                lang.tag()
            );
        }
    }

    #[test]
    fn every_key_the_code_uses_exists() {
        let english = parsed(Lang::En);
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["src", "src/web", "templates"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    files.push(path);
                }
            }
        }
        let mut used = 0;
        for path in files {
            let source = std::fs::read_to_string(&path).unwrap();
            let markers: &[&str] = if path.extension().is_some_and(|e| e == "html") {
                &["t("]
            } else {
                &[".t(", ".fmt(", "Text::key(", "Text::with("]
            };
            for marker in markers {
                for (at, _) in source.match_indices(marker) {
                    let rest = source[at + marker.len()..].trim_start();
                    let Some(quote) = rest.chars().next().filter(|c| matches!(c, '"' | '\''))
                    else {
                        continue;
                    };
                    let Some(len) = rest[1..].find(quote) else {
                        continue;
                    };
                    let key = &rest[1..1 + len];
                    // Keys are dotted lowercase words; this skips the
                    // marker list above and calls with a variable.
                    let is_key = key.contains('.')
                        && key
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
                    if !is_key {
                        continue;
                    }
                    used += 1;
                    assert!(
                        english.contains_key(key),
                        "{} uses missing key {key:?}",
                        path.display()
                    );
                }
            }
        }
        assert!(
            used > 50,
            "found only {used} keys: is the scan still right?"
        );
    }

    #[test]
    fn accept_language_picks_the_best_language_linkd_has() {
        let cases = [
            (None, Lang::En),
            (Some(""), Lang::En),
            (Some("de"), Lang::De),
            (Some("de-DE,de;q=0.9,en;q=0.8"), Lang::De),
            (Some("de-CH"), Lang::De),
            (Some("DE-at"), Lang::De),
            (Some("fr-FR,fr;q=0.9,de;q=0.5,en;q=0.4"), Lang::De),
            (Some("fr, en;q=0.3, de;q=0.7"), Lang::De),
            (Some("en-GB,en;q=0.9,de;q=0.8"), Lang::En),
            (Some("de;q=0, en"), Lang::En),
            (Some("de;q=0"), Lang::En),
            (Some("fr"), Lang::En),
            (Some("*"), Lang::En),
            (Some("en;q=0, *"), Lang::De),
            (Some("fr, *;q=0.5"), Lang::En),
            (Some("de;q=0.5, en;q=0.5"), Lang::De),
            (Some("de;q=2, en"), Lang::En),
            (Some("de;q=0.9999, en;q=0.1"), Lang::En),
            (Some("de;q=abc"), Lang::En),
            (Some(";;;,,,"), Lang::En),
        ];
        for (header, want) in cases {
            assert_eq!(Lang::negotiate(header), want, "{header:?}");
        }
    }

    #[test]
    fn texts_fall_back_to_english_then_to_the_key() {
        assert_eq!(Lang::De.t("confirm.approve"), "Zustimmen");
        let missing = "no.such.key";
        assert_eq!(Lang::En.t(missing), missing);
        assert_eq!(
            Lang::En.fmt("confirm.heading", &[("app", "{n} TV")]),
            "Link {n} TV?"
        );
        assert_eq!(interpolate("a {x} b {y}", |_| None), "a {x} b {y}");
        assert_eq!(interpolate("unclosed {x", |_| Some("!")), "unclosed {x");
    }

    #[test]
    fn relative_and_absolute_times() {
        assert_eq!(Lang::En.ago(5), "just now");
        assert_eq!(Lang::En.ago(61), "1 minute ago");
        assert_eq!(Lang::En.ago(600), "10 minutes ago");
        assert_eq!(Lang::En.ago(3 * 3600), "3 hours ago");
        assert_eq!(Lang::En.ago(86_400 + 5), "1 day ago");
        assert_eq!(Lang::De.ago(600), "vor 10 Minuten");
        assert_eq!(Lang::En.datetime(1_764_094_860), "25 Nov 2025, 18:21 UTC");
        assert_eq!(Lang::De.datetime(1_764_094_860), "25. Nov. 2025, 18:21 UTC");
        assert_eq!(Lang::De.datetime(1_772_330_400), "1. März 2026, 02:00 UTC");
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let ts = 1_764_094_860;
        assert_eq!(
            Lang::En.datetime_in(ts, &berlin, None),
            "25 Nov 2025, 19:21 CET"
        );
        // 23:30 UTC is already the next day in Berlin: "today" and
        // "yesterday" are the reader's days.
        let late = 1_764_113_400;
        assert_eq!(
            Lang::En.datetime_in(late, &berlin, Some(late + 60)),
            "today, 00:30 CET"
        );
        assert_eq!(
            Lang::De.datetime_in(late, &berlin, Some(late + 86_400)),
            "gestern, 00:30 CET"
        );
        assert_eq!(
            Lang::En.datetime_in(late, &Zone::utc(), Some(late + 3600)),
            "yesterday, 23:30 UTC"
        );
        assert_eq!(
            Lang::En.datetime_in(ts, &Zone::utc(), Some(ts + 3 * 86_400)),
            "25 Nov 2025, 18:21 UTC"
        );
        let sao_paulo = Zone::named("America/Sao_Paulo").unwrap();
        assert_eq!(Lang::De.clock(ts, &sao_paulo), "15:21 UTC-03");
    }
}
