//! Text that came from outside and that a person will read: device names a
//! device sends, labels a person sets. One function cleans all of it, so a
//! name cannot hide or reorder what the confirmation page and the devices
//! list show next to it.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Whether `c` draws nothing or moves what is drawn around it: control
/// characters (Cc), format characters (Cf: the bidirectional overrides and
/// isolates U+202A–U+202E and U+2066–U+2069, the marks U+200E/U+200F and
/// U+061C, zero-width spaces and joiners U+200B–U+200D, U+2060–U+2064,
/// U+FEFF, U+180E, …), private-use and unassigned code points, and the line
/// and paragraph separators. An override in a device name would let
/// "Living room TV" read backwards into something else on the page that
/// asks a person to approve it (Unicode TR #36 §2.1, bidirectional text
/// spoofing).
fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// A name as people will see it: invisible and reordering characters
/// removed, every run of whitespace one plain space, trimmed, and cut to
/// `max_chars` characters. `None` when nothing visible is left.
pub fn visible_name(name: &str, max_chars: usize) -> Option<String> {
    let mut out = String::with_capacity(name.len().min(max_chars * 4));
    let mut count = 0;
    let mut space = false;
    for c in name.chars() {
        // Tabs, line breaks and other spaces separate words: one space.
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if is_invisible(c) {
            continue;
        }
        if count + usize::from(space) + 1 > max_chars {
            break;
        }
        if space {
            out.push(' ');
            count += 1;
            space = false;
        }
        out.push(c);
        count += 1;
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_and_bidi_characters_are_removed() {
        for (input, shown) in [
            ("  Living room TV\n", "Living room TV"),
            ("Living\u{202E}VT moor", "LivingVT moor"),
            ("a\u{200B}b\u{200C}c\u{200D}d\u{2060}e\u{FEFF}f", "abcdef"),
            ("\u{2066}x\u{2069}\u{200E}y\u{200F}\u{061C}z\u{180E}", "xyz"),
            ("tab\tand\u{00A0}\u{2028}spaces", "tab and spaces"),
            ("soft\u{00AD}hyphen\u{E000}", "softhyphen"),
            ("Salon TV \u{1F4FA}", "Salon TV \u{1F4FA}"),
        ] {
            assert_eq!(visible_name(input, 64).as_deref(), Some(shown), "{input:?}");
        }
        for nothing in ["", " \t", "\u{0}\u{7}", "\u{202E}\u{200B}\u{FEFF}"] {
            assert_eq!(visible_name(nothing, 64), None, "{nothing:?}");
        }
    }

    #[test]
    fn names_are_cut_to_length_without_a_trailing_space() {
        assert_eq!(visible_name(&"x".repeat(100), 64).unwrap().len(), 64);
        assert_eq!(
            visible_name(&format!("{} y", "x".repeat(63)), 64).unwrap(),
            "x".repeat(63)
        );
        // Removed characters do not count.
        let padded = format!("{}{}", "\u{200B}".repeat(100), "TV");
        assert_eq!(visible_name(&padded, 64).as_deref(), Some("TV"));
    }
}
