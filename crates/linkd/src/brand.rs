//! The operator's brand: product name, logo, accent colour and support
//! link, set once in the config and used by every page, the theme
//! stylesheet, the device's terminal (through `/api/v1/brand`) and, later,
//! emails. A look-alike page stands out when the real one looks like its
//! operator.

use std::fmt;
use std::str::FromStr;

use crate::Config;

/// Logos are served on every page; this keeps a page with its stylesheet
/// and script under the 30 KB a phone on a slow network fetches quickly.
pub const MAX_LOGO_BYTES: usize = 16 * 1024;
pub const MAX_PRODUCT_NAME_CHARS: usize = 60;
pub const MAX_SUPPORT_URL_LEN: usize = 512;
/// WCAG 2.x success criterion 1.4.3 (AA): 4.5:1 for normal text. The
/// accent is the colour of links on white and the background of white
/// button text, so it must reach this against white.
pub const MIN_CONTRAST: f64 = 4.5;

/// An sRGB colour written `#rrggbb` (or `#rgb` on input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HexColor(pub [u8; 3]);

impl FromStr for HexColor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a hex colour such as #1f5fbf");
        let hex = s.trim().strip_prefix('#').ok_or_else(bad)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let digits: Vec<u8> = match hex.len() {
            // #rgb stands for #rrggbb.
            3 => hex.bytes().flat_map(|b| [b, b]).collect(),
            6 => hex.bytes().collect(),
            _ => return Err(bad()),
        };
        let mut rgb = [0u8; 3];
        for (i, pair) in digits.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            rgb[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(HexColor(rgb))
    }
}

impl fmt::Display for HexColor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.0;
        write!(f, "#{r:02x}{g:02x}{b:02x}")
    }
}

impl HexColor {
    pub const WHITE: HexColor = HexColor([255, 255, 255]);

    /// WCAG 2.x relative luminance.
    pub fn luminance(self) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.040_45 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let [r, g, b] = self.0;
        0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    }

    /// WCAG 2.x contrast ratio, from 1 to 21.
    pub fn contrast(self, other: HexColor) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        let (light, dark) = if a > b { (a, b) } else { (b, a) };
        (light + 0.05) / (dark + 0.05)
    }

    /// The colour with every channel scaled by `factor` (0 to 1): the same
    /// hue, darker.
    pub fn darken(self, factor: f64) -> HexColor {
        let scale = |c: u8| (f64::from(c) * factor.clamp(0.0, 1.0)).round() as u8;
        let [r, g, b] = self.0;
        HexColor([scale(r), scale(g), scale(b)])
    }

    /// This colour if white text on it (and it on white) is readable,
    /// else the lightest darker shade of it that is.
    pub fn readable_on_white(self) -> HexColor {
        if self.contrast(HexColor::WHITE) >= MIN_CONTRAST {
            return self;
        }
        // Scaling darkens monotonically, so search the largest factor that
        // passes; 1/256 steps reach every distinct shade.
        let (mut low, mut high) = (0.0_f64, 1.0_f64);
        for _ in 0..16 {
            let mid = (low + high) / 2.0;
            if self.darken(mid).contrast(HexColor::WHITE) >= MIN_CONTRAST {
                low = mid;
            } else {
                high = mid;
            }
        }
        self.darken(low)
    }
}

/// An image served at `/static/logo`.
#[derive(Debug, Clone)]
pub struct Logo {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

impl Logo {
    /// The built-in mark: a rounded square in the accent colour with a
    /// chain link, so the default theme has a logo that matches it.
    pub fn default_for(accent: HexColor) -> Logo {
        let svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
             <rect width=\"32\" height=\"32\" rx=\"8\" fill=\"{accent}\"/>\
             <g fill=\"none\" stroke=\"#fff\" stroke-width=\"2.6\" stroke-linecap=\"round\">\
             <path d=\"M13.2 18.8l5.6-5.6\"/>\
             <path d=\"M14.6 11.6l1.6-1.6a4.2 4.2 0 0 1 5.9 5.9l-1.6 1.6\"/>\
             <path d=\"M17.4 20.4l-1.6 1.6a4.2 4.2 0 0 1-5.9-5.9l1.6-1.6\"/></g></svg>"
        );
        Logo {
            bytes: svg.into_bytes(),
            content_type: "image/svg+xml",
        }
    }

    /// Reads an operator's logo, checking its size and that it is an
    /// image type browsers show.
    pub fn read(path: &std::path::Path) -> Result<Logo, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("reading logo {}: {e}", path.display()))?;
        if bytes.len() > MAX_LOGO_BYTES {
            return Err(format!(
                "logo {} is {} KB; keep it at most {} KB (every page carries it): \
                 compress it or use an SVG",
                path.display(),
                bytes.len().div_ceil(1024),
                MAX_LOGO_BYTES / 1024
            ));
        }
        let content_type = sniff_image(&bytes).ok_or_else(|| {
            format!(
                "logo {} is not an SVG, PNG, JPEG, GIF or WebP image",
                path.display()
            )
        })?;
        Ok(Logo {
            bytes,
            content_type,
        })
    }
}

/// The image type from the file's first bytes, not its name.
fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some("image/gif");
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let head = text.trim_start_matches('\u{feff}').trim_start();
    if (head.starts_with("<svg") || head.starts_with("<?xml") || head.starts_with("<!--"))
        && text.contains("<svg")
    {
        return Some("image/svg+xml");
    }
    None
}

/// Checks the product name and support link (clap checks the colour).
pub fn validate(config: &Config) -> Result<(), String> {
    let name = config.product_name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_PRODUCT_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "product name {:?} must be 1 to {MAX_PRODUCT_NAME_CHARS} characters without control characters",
            config.product_name
        ));
    }
    if let Some(url) = &config.support_url {
        let scheme_ok = ["https://", "http://", "mailto:"]
            .iter()
            .any(|s| url.len() > s.len() && url.to_ascii_lowercase().starts_with(s));
        if !scheme_ok
            || url.len() > MAX_SUPPORT_URL_LEN
            || url
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>'))
        {
            return Err(format!(
                "support URL {url:?} must be an https://, http:// or mailto: address without spaces"
            ));
        }
    }
    Ok(())
}

/// The brand as every surface uses it.
#[derive(Debug, Clone)]
pub struct Brand {
    pub product_name: String,
    /// The accent as configured, or a darker shade when that was too light
    /// to read on white.
    pub accent: HexColor,
    pub support_url: Option<String>,
    pub logo: Logo,
}

impl Brand {
    /// Builds the brand from the config, reading the logo file. Also
    /// returns what was changed, for the start-up log.
    pub fn from_config(config: &Config) -> Result<(Brand, Vec<String>), String> {
        validate(config)?;
        let mut notes = Vec::new();
        let wanted = config.accent_color;
        let accent = wanted.readable_on_white();
        if accent != wanted {
            notes.push(format!(
                "accent colour {wanted} has a contrast of {:.1}:1 with white, below the {MIN_CONTRAST}:1 \
                 that WCAG AA asks for text; using the darker {accent} ({:.1}:1) instead",
                wanted.contrast(HexColor::WHITE),
                accent.contrast(HexColor::WHITE),
            ));
        }
        let logo = match &config.logo {
            Some(path) => Logo::read(path)?,
            None => Logo::default_for(accent),
        };
        Ok((
            Brand {
                product_name: config.product_name.trim().to_string(),
                accent,
                support_url: config.support_url.clone(),
                logo,
            },
            notes,
        ))
    }

    /// Custom properties for the stylesheet: the accent and the shades
    /// derived from it.
    pub fn css_variables(&self) -> String {
        format!(
            ":root {{ --accent: {}; --accent-strong: {}; }}\n",
            self.accent,
            self.accent.darken(0.8),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_colours_parse_and_print() {
        assert_eq!(
            "#1F5FBF".parse::<HexColor>().unwrap().to_string(),
            "#1f5fbf"
        );
        assert_eq!("#fc0".parse::<HexColor>().unwrap().to_string(), "#ffcc00");
        for bad in [
            "1f5fbf",
            "#12345",
            "#ggg",
            "",
            "#",
            "red",
            "#1f5fbf00",
            "#+1+2+3",
        ] {
            assert!(bad.parse::<HexColor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn contrast_matches_wcag() {
        let black = HexColor([0, 0, 0]);
        assert!((black.contrast(HexColor::WHITE) - 21.0).abs() < 1e-9);
        assert!((HexColor::WHITE.contrast(HexColor::WHITE) - 1.0).abs() < 1e-9);
        // #767676 is the classic lightest grey that passes AA on white.
        let grey = "#767676".parse::<HexColor>().unwrap();
        assert!(grey.contrast(HexColor::WHITE) >= 4.5);
        let lighter = "#777777".parse::<HexColor>().unwrap();
        assert!(lighter.contrast(HexColor::WHITE) < 4.5);
    }

    #[test]
    fn a_light_accent_is_darkened_just_enough() {
        let yellow: HexColor = "#ffcc00".parse().unwrap();
        let fixed = yellow.readable_on_white();
        assert_ne!(fixed, yellow);
        let c = fixed.contrast(HexColor::WHITE);
        assert!((4.5..4.7).contains(&c), "{fixed} {c}");
        // Same hue: red stays the largest channel, blue stays zero.
        assert!(fixed.0[0] > fixed.0[1] && fixed.0[2] == 0, "{fixed}");
        let fine: HexColor = "#1f5fbf".parse().unwrap();
        assert_eq!(fine.readable_on_white(), fine);
        assert_eq!(HexColor::WHITE.readable_on_white().to_string(), "#767676");
    }

    #[test]
    fn logos_are_recognised_by_content() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(
            sniff_image(b"<svg xmlns=\"x\"></svg>"),
            Some("image/svg+xml")
        );
        assert_eq!(
            sniff_image(b"<?xml version=\"1.0\"?><svg></svg>"),
            Some("image/svg+xml")
        );
        assert_eq!(sniff_image(b"<html><script></script></html>"), None);
        assert_eq!(sniff_image(b"GIF89a..."), Some("image/gif"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"plain text"), None);
    }

    #[test]
    fn names_and_support_links_are_checked() {
        let mut config = Config::defaults();
        assert!(validate(&config).is_ok());
        config.product_name = " ".into();
        assert!(validate(&config).is_err());
        config.product_name = "Acme Link".into();
        for good in ["https://help.example.com/link", "mailto:help@example.com"] {
            config.support_url = Some(good.into());
            assert!(validate(&config).is_ok(), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "https://",
            "//x",
            "https://a b",
            "https://x\"y",
        ] {
            config.support_url = Some(bad.into());
            assert!(validate(&config).is_err(), "{bad}");
        }
    }
}
