//! Parsing of human-friendly durations (`500ms`, `30s`, `2m`, `1h`) and byte sizes
//! (`65536`, `64KiB`, `1MiB`) for flags and configuration.
//!
//! Invariant: a parsed value is exactly what the text says; nothing is rounded or clamped
//! here. Range checks belong to [`crate::Config::validate`].

use std::fmt;
use std::time::Duration;

/// Why a duration or size could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    input: String,
    expected: &'static str,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value {:?}: expected {}",
            self.input, self.expected
        )
    }
}

impl std::error::Error for UnitError {}

const DURATION_FORMS: &str = "a duration such as 500ms, 30s, 2m or 1h";
const SIZE_FORMS: &str = "a size in bytes such as 65536, 64KiB or 1MiB";

/// Parses `500ms`, `30s`, `2m`, `1h` (a whole number and a unit; the unit is required).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let error = || UnitError {
        input: text.to_owned(),
        expected: DURATION_FORMS,
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(error)?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(error()),
    };
    let millis = number.checked_mul(millis_per_unit).ok_or_else(error)?;
    Ok(Duration::from_millis(millis))
}

/// Parses a byte count: a bare number, or a number with `B`, `KiB` or `MiB`.
pub fn parse_size(text: &str) -> Result<usize, UnitError> {
    let error = || UnitError {
        input: text.to_owned(),
        expected: SIZE_FORMS,
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(error)?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        _ => return Err(error()),
    };
    let bytes = number.checked_mul(multiplier).ok_or_else(error)?;
    usize::try_from(bytes).map_err(|_| error())
}

/// Formats a duration the way [`parse_duration`] reads it back.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 1_000 != 0 || millis == 0 {
        format!("{millis}ms")
    } else {
        format!("{}s", millis / 1_000)
    }
}

/// Splits `"30s"` into `(30, "s")`; `None` when there are no leading digits.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number = text[..digits].parse().ok()?;
    Some((number, &text[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_need_a_known_unit() {
        for bad in [
            "",
            "30",
            "s",
            "1.5s",
            "-1s",
            "10 parsecs",
            "5d",
            "99999999999999999999h",
        ] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(error.to_string().contains("duration"), "{error}");
        }
    }

    #[test]
    fn sizes_in_bytes_and_binary_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("12B"), Ok(12));
    }

    #[test]
    fn sizes_reject_other_forms() {
        for bad in ["", "KiB", "64kb", "64 KiB", "1GiB", "0x10"] {
            assert!(parse_size(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn formatted_durations_read_back() {
        for millis in [0, 250, 1_000, 30_000, 61_500] {
            let duration = Duration::from_millis(millis);
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }
}
