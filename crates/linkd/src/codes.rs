//! User codes and device codes (RFC 8628 §6.1), and the hashing of secrets
//! that are stored only as hashes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

/// RFC 8628 §6.1: twenty consonants, no vowels (no words), no digits or
/// letters that look alike (0/O, 1/I/L, 5/S, 8/B are avoided by leaving out
/// digits entirely).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// 20^8 ≈ 2^34.6 possible codes.
pub const USER_CODE_LEN: usize = 8;
/// Longest input `UserCode::parse` looks at; anything longer is rejected before
/// normalisation so hostile input costs nothing.
const MAX_INPUT_LEN: usize = 64;

/// Longest pasted text [`UserCode::find_in`] looks through.
const MAX_PASTE_LEN: usize = 256;

/// Characters that only help reading: spaces of any kind, the dash and its
/// typographic cousins (an en dash from a phone's keyboard or a pasted
/// message), the minus sign.
fn is_separator(c: char) -> bool {
    c.is_whitespace() || c == '-' || ('\u{2010}'..='\u{2015}').contains(&c) || c == '\u{2212}'
}

/// A normalised user code: eight characters from [`USER_CODE_ALPHABET`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserCode(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("the code is empty")]
    Empty,
    #[error("the code is too long")]
    TooLong,
    #[error("the code is too short")]
    TooShort,
    #[error("the code contains a character that codes never use")]
    BadCharacter,
}

impl UserCode {
    pub fn generate(rng: &mut impl Rng) -> Self {
        let code = (0..USER_CODE_LEN)
            .map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char)
            .collect();
        UserCode(code)
    }

    /// Accepts what a person types: any case, with or without dashes and
    /// spaces (RFC 8628 §6.1 recommends ignoring punctuation and case).
    /// Characters that look like a code's letters ([`look_alike`]: a phone
    /// keyboard in full-width or Cyrillic mode, an en dash a mail client
    /// put in) are read as the letters they look like; anything else is
    /// rejected rather than guessed at.
    pub fn parse(input: &str) -> Result<Self, CodeError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(CodeError::TooLong);
        }
        let mut code = String::with_capacity(USER_CODE_LEN);
        for c in input.chars() {
            let c = look_alike(c);
            if is_separator(c) {
                continue;
            }
            if !c.is_ascii() {
                return Err(CodeError::BadCharacter);
            }
            let upper = c.to_ascii_uppercase();
            if !USER_CODE_ALPHABET.contains(&(upper as u8)) {
                return Err(CodeError::BadCharacter);
            }
            code.push(upper);
        }
        match code.len() {
            0 => Err(CodeError::Empty),
            n if n < USER_CODE_LEN => Err(CodeError::TooShort),
            n if n > USER_CODE_LEN => Err(CodeError::TooLong),
            _ => Ok(UserCode(code)),
        }
    }

    /// Finds the one code in pasted text ("Code: MFJT-LWZM", "your code is
    /// mfjt lwzm."): eight alphabet letters standing alone, or two groups
    /// of four with one dash or space between, set off from other letters
    /// and digits. `None` when the text holds no such code or more than
    /// one, so nothing is guessed at (RFC 8628 §6.1 asks entry to be
    /// forgiving, not to pick among candidates).
    pub fn find_in(text: &str) -> Option<Self> {
        if text.len() > MAX_PASTE_LEN {
            return None;
        }
        // Runs of letters and digits, each with the text that follows it.
        let mut runs: Vec<(&str, &str)> = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(char::is_alphanumeric) {
            let word = &rest[start..];
            let end = word
                .find(|c: char| !c.is_alphanumeric())
                .unwrap_or(word.len());
            let after = &word[end..];
            let gap_end = after.find(char::is_alphanumeric).unwrap_or(after.len());
            runs.push((&word[..end], &after[..gap_end]));
            rest = after;
        }
        let letters = |w: &str| {
            w.bytes()
                .all(|b| USER_CODE_ALPHABET.contains(&b.to_ascii_uppercase()))
        };
        let mut found: Option<UserCode> = None;
        let mut offer = |candidate: String| -> bool {
            let Ok(code) = UserCode::parse(&candidate) else {
                return true;
            };
            match &found {
                Some(f) if *f != code => false,
                _ => {
                    found = Some(code);
                    true
                }
            }
        };
        for (i, (word, gap)) in runs.iter().enumerate() {
            let whole = word.len() == USER_CODE_LEN && letters(word);
            let halves = word.len() == USER_CODE_LEN / 2
                && letters(word)
                && gap.chars().count() == 1
                && gap.chars().all(is_separator)
                && runs
                    .get(i + 1)
                    .is_some_and(|(next, _)| next.len() == USER_CODE_LEN / 2 && letters(next));
            if whole && !offer(word.to_string()) {
                return None;
            }
            if halves && !offer(format!("{word}{}", runs[i + 1].0)) {
                return None;
            }
        }
        found
    }

    /// The form stored and compared: eight letters, no dash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form shown to people: `XXXX-XXXX`.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..4], &self.0[4..])
    }
}

impl fmt::Display for UserCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl fmt::Debug for UserCode {
    // A live user code is a secret until it is used; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserCode(..)")
    }
}

/// The ASCII character `c` looks like, for reading a typed code: '-' for
/// every dash, ' ' for every space (and the invisible ones pasting
/// brings along), the ASCII letter or digit for a full-width one, and the
/// Latin letter for a Cyrillic or Greek capital drawn the same. Codes
/// ignore case, so a Cyrillic or Greek keyboard's lower-case form of such
/// a capital counts as the capital. Other characters come back unchanged
/// (and a code refuses them).
pub fn look_alike(c: char) -> char {
    match c {
        // Full-width forms (U+FF01..U+FF5E) sit at a fixed offset from
        // ASCII: what a CJK or full-width keyboard mode types.
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        // Hyphen, non-breaking hyphen, figure dash, en dash, em dash,
        // horizontal bar, minus sign, small hyphen-minus, soft hyphen.
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{00AD}' => '-',
        // No-break, en/em and other typographic spaces, the ideographic
        // space, and the zero-width characters pasted text carries.
        '\u{00A0}'
        | '\u{2000}'..='\u{200D}'
        | '\u{202F}'
        | '\u{205F}'
        | '\u{2060}'
        | '\u{3000}'
        | '\u{FEFF}' => ' ',
        // Cyrillic capitals drawn like Latin ones, and their lower case.
        'А' | 'а' => 'A',
        'В' | 'в' => 'B',
        'С' | 'с' => 'C',
        'Е' | 'е' => 'E',
        'Н' | 'н' => 'H',
        'К' | 'к' => 'K',
        'М' | 'м' => 'M',
        'О' | 'о' => 'O',
        'Р' | 'р' => 'P',
        'Т' | 'т' => 'T',
        'Х' | 'х' => 'X',
        // Greek capitals drawn like Latin ones, and their lower case.
        'Α' | 'α' => 'A',
        'Β' | 'β' => 'B',
        'Ε' | 'ε' => 'E',
        'Ζ' | 'ζ' => 'Z',
        'Η' | 'η' => 'H',
        'Ι' | 'ι' => 'I',
        'Κ' | 'κ' => 'K',
        'Μ' | 'μ' => 'M',
        'Ν' | 'ν' => 'N',
        'Ο' | 'ο' => 'O',
        'Ρ' | 'ρ' => 'P',
        'Τ' | 'τ' => 'T',
        'Χ' | 'χ' => 'X',
        _ => c,
    }
}

/// A random secret of `bytes` bytes, base64url without padding.
/// Device codes, refresh tokens, session ids and CSRF tokens use 32 bytes (256 bits).
pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Hex digits of milliseconds since the Unix epoch that sortable ids and
/// device codes start with (enough until the year 10889).
const TIME_DIGITS: usize = 12;

/// `rest` after `now_ms` in [`TIME_DIGITS`] lowercase hex digits, so that
/// such strings sort by time.
fn after_time(now_ms: i64, rest: &str) -> String {
    format!("{:0width$x}{rest}", now_ms.max(0), width = TIME_DIGITS)
}

/// Hex digits of the issue time a device code starts with.
const DEVICE_CODE_TIME_DIGITS: usize = TIME_DIGITS;
/// Length of a device code: the time, then 256 random bits in base64url.
pub const DEVICE_CODE_LEN: usize = DEVICE_CODE_TIME_DIGITS + 43;
/// Length of a device code's key: the time, then a SHA-256 in base64url.
const DEVICE_CODE_KEY_LEN: usize = DEVICE_CODE_TIME_DIGITS + 43;

/// A new device code (RFC 8628 §3.2): 12 hex digits of milliseconds since
/// the Unix epoch, then a 256-bit secret. The code is stored only as its
/// key ([`device_code_key`]), which starts with the same time: new codes
/// then land at the end of the key's unique index instead of on a random
/// page of it, so a group of new authorizations rewrites one page of that
/// index rather than one per code (half of what each one wrote to the
/// write-ahead log, BENCH.md). The time tells the device nothing it did
/// not know; the secret is as long as before.
pub fn device_code(now_ms: i64) -> String {
    after_time(now_ms, &random_secret(32))
}

/// The key a device code is stored and looked up by: the code's issue
/// time as it gave it, then the SHA-256 of the whole code. A code without
/// the time (issued before device codes carried it) is keyed by its hash
/// alone; the two kinds of key differ in length, so neither can stand for
/// the other.
pub fn device_code_key(code: &str) -> String {
    match code.get(..DEVICE_CODE_TIME_DIGITS) {
        Some(time)
            if code.len() == DEVICE_CODE_LEN
                && time.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            let mut key = String::with_capacity(DEVICE_CODE_KEY_LEN);
            key.push_str(time);
            URL_SAFE_NO_PAD.encode_string(Sha256::digest(code.as_bytes()), &mut key);
            key
        }
        _ => secret_hash(code),
    }
}

/// A record id that sorts by creation time: 12 hex digits of milliseconds
/// since the Unix epoch, then 96 random bits. New rows then land at the end
/// of the primary-key index instead of on a random page of it, so a group
/// of new device authorizations rewrites one page of that index rather than
/// one per row. Ids are not secrets; the random part only keeps them apart.
pub fn sortable_id(now_ms: i64) -> String {
    let mut random = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut random);
    after_time(now_ms, &URL_SAFE_NO_PAD.encode(random))
}

/// A random record id: 128 bits as 32 lowercase hex digits. Account and
/// device ids appear in addresses, in `linkd devices unlink ID` and in
/// tokens' `sub` and `sid`; base64url could start one with `-`, which a
/// command line reads as an option, so ids use a plain alphabet instead.
pub fn random_id() -> String {
    let mut random = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut random);
    format!("{:032x}", u128::from_be_bytes(random))
}

/// SHA-256 of a high-entropy secret, base64url. Secrets with ≥128 bits of
/// randomness need no salt or slow hash; the hash is the lookup key.
pub fn secret_hash(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_are_hex_and_differ() {
        let (a, b) = (random_id(), random_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn sortable_ids_sort_by_time_and_differ() {
        let (a, b) = (
            sortable_id(1_700_000_000_000),
            sortable_id(1_700_000_000_000),
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), 28);
        assert!(sortable_id(1_700_000_000_001) > a.max(b.clone()));
        assert!(sortable_id(999) < b);
    }

    #[test]
    fn parse_accepts_case_dashes_and_spaces() {
        for input in [
            "BCDF-GHJK",
            "bcdfghjk",
            "bcdf ghjk",
            " B-C-D-F-G-H-J-K ",
            "bcdF-gHjk\t",
        ] {
            let code = UserCode::parse(input).unwrap();
            assert_eq!(code.as_str(), "BCDFGHJK");
            assert_eq!(code.display(), "BCDF-GHJK");
        }
    }

    #[test]
    fn typographic_dashes_and_spaces_separate_too() {
        for input in [
            "BCDF\u{2013}GHJK",
            "BCDF\u{2014}GHJK",
            "BCDF\u{a0}GHJK",
            "BCDF\u{2212}GHJK",
        ] {
            assert_eq!(
                UserCode::parse(input).unwrap().as_str(),
                "BCDFGHJK",
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_code_is_found_in_pasted_text() {
        for text in [
            "Code: MFJT-LWZM",
            "CODE-:MFJTLWZM",
            "Your code is mfjt lwzm.",
            "Enter MFJT\u{2013}LWZM at example.com/link",
            "(MFJTLWZM)",
            "MFJT-LWZM and again MFJT-LWZM",
        ] {
            assert_eq!(
                UserCode::find_in(text).map(|c| c.display()).as_deref(),
                Some("MFJT-LWZM"),
                "{text:?}"
            );
        }
        for text in [
            "",
            "Code: MFJT-LWZ",
            "MFJT-LWZM or BCDF-GHJK",
            "MFJTLWZM1",
            "BCDF GHJK LMNP",
            "Code: MFJT--LWZM",
            &"B".repeat(300),
        ] {
            assert_eq!(UserCode::find_in(text), None, "{text:?}");
        }
    }

    #[test]
    fn parse_rejects_what_codes_never_contain() {
        assert_eq!(UserCode::parse(""), Err(CodeError::Empty));
        assert_eq!(UserCode::parse(" - "), Err(CodeError::Empty));
        assert_eq!(UserCode::parse("BCDF"), Err(CodeError::TooShort));
        assert_eq!(UserCode::parse("BCDFGHJKL"), Err(CodeError::TooLong));
        assert_eq!(UserCode::parse(&"B".repeat(65)), Err(CodeError::TooLong));
        // Vowels and digits are not in the alphabet.
        assert_eq!(UserCode::parse("BCDFGHJA"), Err(CodeError::BadCharacter));
        assert_eq!(UserCode::parse("BCDFGHJ1"), Err(CodeError::BadCharacter));
        // A look-alike of a letter codes never use is still refused.
        assert_eq!(UserCode::parse("BCDFGHJＡ"), Err(CodeError::BadCharacter));
        assert_eq!(UserCode::parse("BCDFGHJО"), Err(CodeError::BadCharacter));
        assert_eq!(UserCode::parse("BCDFGHJ１"), Err(CodeError::BadCharacter));
        assert_eq!(UserCode::parse("BCDFGHJЖ"), Err(CodeError::BadCharacter));
        assert_eq!(UserCode::parse("BCDF\0GHJK"), Err(CodeError::BadCharacter));
    }

    #[test]
    fn full_width_letters_and_digits_read_as_ascii() {
        assert_eq!(
            UserCode::parse("ＢＣＤＦ－ＧＨＪＫ").unwrap().as_str(),
            "BCDFGHJK"
        );
        assert_eq!(
            UserCode::parse("ｂｃｄｆｇｈｊｋ").unwrap().as_str(),
            "BCDFGHJK"
        );
        assert_eq!(look_alike('１'), '1');
        assert_eq!(look_alike('０'), '0');
    }

    #[test]
    fn cyrillic_capitals_read_as_the_latin_they_look_like() {
        // В, С, Н, К, М, Р, Т, Х: every Cyrillic capital a code's letters share.
        assert_eq!(UserCode::parse("ВСНК-МРТХ").unwrap().as_str(), "BCHKMPTX");
        assert_eq!(UserCode::parse("bcdf-ghjк").unwrap().as_str(), "BCDFGHJK");
        assert_eq!(UserCode::parse("сррх-хссх").unwrap().as_str(), "CPPXXCCX");
    }

    #[test]
    fn greek_capitals_read_as_the_latin_they_look_like() {
        // Β, Ζ, Η, Κ, Μ, Ν, Ρ, Τ, Χ.
        assert_eq!(UserCode::parse("ΒΖΗΚ-ΜΝΡΤ").unwrap().as_str(), "BZHKMNPT");
        assert_eq!(UserCode::parse("βζηκ-μνρτ").unwrap().as_str(), "BZHKMNPT");
        assert_eq!(UserCode::parse("BCDFGHJΧ").unwrap().as_str(), "BCDFGHJX");
    }

    #[test]
    fn every_dash_reads_as_a_dash() {
        for dash in [
            '‐', '‑', '‒', '–', '—', '―', '−', '﹘', '﹣', '－', '\u{00AD}',
        ] {
            let typed = format!("BCDF{dash}GHJK");
            assert_eq!(
                UserCode::parse(&typed).unwrap().as_str(),
                "BCDFGHJK",
                "{dash:?}"
            );
        }
    }

    #[test]
    fn every_space_reads_as_a_space() {
        for space in [
            '\u{00A0}', '\u{2002}', '\u{2003}', '\u{2009}', '\u{200B}', '\u{202F}', '\u{3000}',
            '\u{FEFF}',
        ] {
            let typed = format!("{space}BCDF{space}GHJK{space}");
            assert_eq!(
                UserCode::parse(&typed).unwrap().as_str(),
                "BCDFGHJK",
                "{space:?}"
            );
        }
    }

    #[test]
    fn generated_codes_use_only_the_alphabet_and_parse_back() {
        let mut rng = rand::thread_rng();
        for _ in 0..1000 {
            let code = UserCode::generate(&mut rng);
            assert_eq!(code.as_str().len(), USER_CODE_LEN);
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| USER_CODE_ALPHABET.contains(&b))
            );
            assert_eq!(UserCode::parse(&code.display()).unwrap(), code);
            assert_eq!(
                UserCode::parse(&code.as_str().to_lowercase()).unwrap(),
                code
            );
        }
    }

    #[test]
    fn user_code_space_has_over_34_bits() {
        let bits = (USER_CODE_ALPHABET.len() as f64).log2() * USER_CODE_LEN as f64;
        assert!(bits > 34.5, "{bits}");
    }

    #[test]
    fn generation_is_roughly_uniform() {
        let mut rng = rand::thread_rng();
        let mut counts = [0u32; 20];
        for _ in 0..2000 {
            for b in UserCode::generate(&mut rng).as_str().bytes() {
                let i = USER_CODE_ALPHABET.iter().position(|&a| a == b).unwrap();
                counts[i] += 1;
            }
        }
        // 16000 draws, 800 expected per letter; a biased generator would
        // leave some letters far off.
        assert!(
            counts.iter().all(|&c| (600..1000).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn device_codes_carry_their_time_and_keys_sort_by_it() {
        let (a, b) = (
            device_code(1_700_000_000_000),
            device_code(1_700_000_000_000),
        );
        assert_eq!(a.len(), DEVICE_CODE_LEN);
        assert_ne!(a, b);
        assert!(a.starts_with("018bcfe56800"));
        let key = device_code_key(&a);
        assert_eq!(key.len(), DEVICE_CODE_KEY_LEN);
        assert_eq!(key, device_code_key(&a));
        assert_ne!(key, device_code_key(&b));
        // The time, then the hash of the whole code.
        assert_eq!(&key[..DEVICE_CODE_TIME_DIGITS], "018bcfe56800");
        assert_eq!(&key[DEVICE_CODE_TIME_DIGITS..], secret_hash(&a));
        let later = device_code_key(&device_code(1_700_000_000_001));
        assert!(later > key.clone().max(device_code_key(&b)));
    }

    #[test]
    fn device_codes_without_a_time_are_keyed_by_their_hash() {
        // A code issued before codes carried their time: 43 characters.
        let old = random_secret(32);
        assert_eq!(device_code_key(&old), secret_hash(&old));
        // The right length without hex digits first, or hex digits at
        // another length: hashed whole as well.
        let upper = format!("ABCDEF012345{}", random_secret(32));
        assert_eq!(device_code_key(&upper), secret_hash(&upper));
        let short = format!("{:012x}{}", 5, random_secret(16));
        assert_eq!(device_code_key(&short), secret_hash(&short));
        // Multi-byte text where the time would end is no time.
        let odd = format!("01234567890é{}", random_secret(31));
        assert_eq!(odd.len(), DEVICE_CODE_LEN);
        assert_eq!(device_code_key(&odd), secret_hash(&odd));
        assert_eq!(device_code_key(""), secret_hash(""));
    }

    #[test]
    fn device_code_secret_has_256_bits_and_hash_is_stable() {
        let a = random_secret(32);
        let b = random_secret(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(secret_hash(&a), secret_hash(&a));
        assert_ne!(secret_hash(&a), secret_hash(&b));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Eight letters of the alphabet.
        fn code() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                proptest::sample::select(USER_CODE_ALPHABET.to_vec()),
                USER_CODE_LEN,
            )
            .prop_map(|bytes| bytes.into_iter().map(char::from).collect())
        }

        /// What a person might type around a code: case changes, dashes,
        /// spaces.
        fn typed(code: String) -> impl Strategy<Value = String> {
            proptest::collection::vec((any::<bool>(), 0..3usize, 0..3usize), USER_CODE_LEN)
                .prop_map(move |shape| {
                    code.chars()
                        .zip(shape)
                        .map(|(c, (lower, dashes, spaces))| {
                            let c = if lower { c.to_ascii_lowercase() } else { c };
                            format!("{}{}{c}", "-".repeat(dashes), " ".repeat(spaces))
                        })
                        .collect()
                })
        }

        proptest! {
            #[test]
            fn any_typing_of_a_code_normalises_to_it(
                (code, input) in code().prop_flat_map(|c| (Just(c.clone()), typed(c)))
            ) {
                prop_assume!(input.len() <= 64);
                let parsed = UserCode::parse(&input).unwrap();
                prop_assert_eq!(parsed.as_str(), code.as_str());
                prop_assert_eq!(UserCode::parse(&parsed.display()).unwrap(), parsed);
            }

            #[test]
            fn parse_never_panics_and_only_yields_alphabet_codes(input in ".{0,80}") {
                if let Ok(code) = UserCode::parse(&input) {
                    prop_assert_eq!(code.as_str().len(), USER_CODE_LEN);
                    prop_assert!(code.as_str().bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
                }
            }

            #[test]
            fn a_character_outside_the_alphabet_is_refused(code in code(), at in 0..USER_CODE_LEN, c in any::<char>()) {
                let read = look_alike(c);
                let upper = read.to_ascii_uppercase();
                prop_assume!(!(read.is_ascii() && USER_CODE_ALPHABET.contains(&(upper as u8))));
                prop_assume!(![' ', '-', '\t'].contains(&read));
                let mut chars: Vec<char> = code.chars().collect();
                chars[at] = c;
                let input: String = chars.into_iter().collect();
                prop_assert!(UserCode::parse(&input).is_err());
            }
        }
    }

    #[test]
    fn debug_does_not_reveal_the_code() {
        let code = UserCode::parse("BCDFGHJK").unwrap();
        assert!(!format!("{code:?}").contains("BCDF"));
    }
}
