//! Kubernetes resource quantities (`500m`, `1`, `0.5`, `64Mi`, `1G`, `129e6`): exact parsing and
//! conversion to integers (millicores for cpu, bytes for memory), rounding up like Kubernetes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a quantity string was rejected or could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("invalid quantity {text:?}: {reason}")]
    Invalid { text: String, reason: &'static str },
    #[error("quantity {text:?} is too large")]
    TooLarge { text: String },
    #[error("quantity {text:?} must not be negative")]
    Negative { text: String },
}

/// A parsed quantity. The value is exactly `mantissa * 10^exp10 * 2^exp2` (negated when
/// `negative`); the original spelling is kept for printing.
#[derive(Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

/// At most this many significant digits; u128 holds 38.
const MAX_DIGITS: usize = 38;
/// Decimal exponents beyond this are rejected outright (the value cannot fit any integer).
const MAX_EXPONENT: i32 = 1000;

impl Quantity {
    /// Parses `<sign?><digits>[.<digits>]<suffix?>` where the suffix is one of
    /// `n u m k M G T P E`, `Ki Mi Gi Ti Pi Ei`, or a decimal exponent `e<int>` / `E<int>`.
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let invalid = |reason| QuantityError::Invalid {
            text: text.to_string(),
            reason,
        };
        let (negative, unsigned) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            Some(_) => (false, text),
            None => return Err(invalid("empty")),
        };
        let number_len = unsigned
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(unsigned.len());
        let (number, suffix) = unsigned.split_at(number_len);
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (number, ""),
        };
        if fraction.contains('.') {
            return Err(invalid("more than one decimal point"));
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid("expected a number such as 500m, 1.5 or 64Mi"));
        }
        let (suffix_exp10, exp2) = parse_suffix(suffix).ok_or_else(|| {
            invalid("unknown suffix (use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<exponent>)")
        })?;

        // All digits as one integer; drop leading zeros and move trailing zeros into the exponent.
        let mut digits: String = format!("{whole}{fraction}");
        let mut exp10 = suffix_exp10 - fraction.len() as i32;
        let trimmed_len = digits.trim_end_matches('0').len();
        exp10 += (digits.len() - trimmed_len) as i32;
        digits.truncate(trimmed_len);
        let significant = digits.trim_start_matches('0');
        if significant.len() > MAX_DIGITS {
            return Err(invalid("too many significant digits"));
        }
        let mantissa = if significant.is_empty() {
            exp10 = 0;
            0
        } else {
            significant
                .parse::<u128>()
                .map_err(|_| invalid("bad digits"))?
        };
        Ok(Quantity {
            text: text.to_string(),
            negative: negative && mantissa != 0,
            mantissa,
            exp10,
            exp2,
        })
    }

    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for values below zero (`-1`, `-500m`); `-0` is not negative.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// True when the value is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The value in thousandths, rounded up: cpu `"500m"` -> 500, `"1"` -> 1000, `"0.5"` -> 500.
    pub fn to_millis(&self) -> Result<u64, QuantityError> {
        self.scaled_ceil(1000)
    }

    /// The value in whole units, rounded up: memory `"64Mi"` -> 67108864, `"1G"` -> 1000000000.
    pub fn to_units(&self) -> Result<u64, QuantityError> {
        self.scaled_ceil(1)
    }

    /// `ceil(value * scale)` as u64.
    fn scaled_ceil(&self, scale: u128) -> Result<u64, QuantityError> {
        if self.negative {
            return Err(QuantityError::Negative {
                text: self.text.clone(),
            });
        }
        let too_large = || QuantityError::TooLarge {
            text: self.text.clone(),
        };
        if self.mantissa == 0 {
            return Ok(0);
        }
        if self.exp10 > MAX_EXPONENT {
            return Err(too_large());
        }
        let numerator = self
            .mantissa
            .checked_mul(scale)
            .and_then(|n| n.checked_mul(1u128.checked_shl(self.exp2)?))
            .ok_or_else(too_large)?;
        let value = if self.exp10 >= 0 {
            let factor = 10u128
                .checked_pow(self.exp10 as u32)
                .ok_or_else(too_large)?;
            numerator.checked_mul(factor).ok_or_else(too_large)?
        } else {
            match 10u128.checked_pow(self.exp10.unsigned_abs()) {
                // The divisor exceeds any u128 numerator: a positive value below one rounds up to 1.
                None => 1,
                Some(divisor) => numerator.div_ceil(divisor),
            }
        };
        u64::try_from(value).map_err(|_| too_large())
    }

    /// Compares two quantities exactly enough for `requests <= limits` checks
    /// (thousandths, rounded up); `None` when either is out of range.
    pub(crate) fn millis_cmp(&self, other: &Quantity) -> Option<std::cmp::Ordering> {
        Some(self.to_millis().ok()?.cmp(&other.to_millis().ok()?))
    }
}

/// `(decimal exponent, binary exponent)` for a suffix.
fn parse_suffix(suffix: &str) -> Option<(i32, u32)> {
    let known = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4
            {
                return None;
            }
            let value: i32 = exponent.parse().ok()?;
            return Some((value, 0));
        }
    };
    Some(known)
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(text: &str) -> Result<Quantity, QuantityError> {
        Quantity::parse(text)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({:?})", self.text)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// The text of a quantity as found in a manifest: a string, or a bare YAML/JSON number
/// (`cpu: 1`, `memory: 129e6`) turned into its decimal spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuantityText(pub(crate) String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = QuantityText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as \"500m\", \"64Mi\" or 1")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<QuantityText, E> {
                if v.is_finite() {
                    Ok(QuantityText(format!("{v}")))
                } else {
                    Err(E::custom("a quantity must be a finite number"))
                }
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let QuantityText(text) = QuantityText::deserialize(deserializer)?;
        Quantity::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millicores() {
        let table: &[(&str, u64)] = &[
            ("500m", 500),
            ("1", 1000),
            ("0.5", 500),
            (".5", 500),
            ("1.", 1000),
            ("2", 2000),
            ("100m", 100),
            ("0.1", 100),
            ("1500m", 1500),
            ("0", 0),
            ("0m", 0),
            ("-0", 0),
            ("+1", 1000),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("0.0001", 1), // rounds up like Kubernetes
            ("1n", 1),
            ("250000u", 250),
            ("001.500", 1500),
            ("1e-40", 1),
        ];
        for (text, millis) in table {
            let quantity = Quantity::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(quantity.to_millis(), Ok(*millis), "{text}");
            assert_eq!(quantity.as_str(), *text);
        }
    }

    #[test]
    fn memory_quantities_in_bytes() {
        let table: &[(&str, u64)] = &[
            ("64Mi", 64 * 1024 * 1024),
            ("1G", 1_000_000_000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129M", 129_000_000),
            ("123Mi", 128_974_848),
            ("1Ki", 1024),
            ("1.5Gi", 1_610_612_736),
            ("1Ti", 1 << 40),
            ("1Pi", 1 << 50),
            ("1Ei", 1 << 60),
            ("2E", 2_000_000_000_000_000_000),
            ("1k", 1000),
            ("0.5", 1),
            ("1m", 1),
            ("100", 100),
            ("1e0", 1),
            ("1E+2", 100),
        ];
        for (text, bytes) in table {
            let quantity = Quantity::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(quantity.to_units(), Ok(*bytes), "{text}");
        }
    }

    #[test]
    fn invalid_quantities_are_rejected() {
        let table = [
            "",
            "12Q",
            "Mi",
            "1.2.3",
            "abc",
            "1 Mi",
            " 1",
            "1Mi ",
            "1K",
            "1mi",
            "1KiB",
            "--1",
            "+",
            "-",
            ".",
            "1e",
            "1e+",
            "1ee3",
            "0x10",
            "1,5",
            "1_000",
            "1e99999",
            "1Gb",
            "123456789012345678901234567890123456789",
        ];
        for text in table {
            assert!(
                Quantity::parse(text).is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn out_of_range_and_negative_values_do_not_convert() {
        assert!(matches!(
            Quantity::parse("16Ei").map(|q| q.to_units()),
            Ok(Err(QuantityError::TooLarge { .. }))
        ));
        assert!(matches!(
            Quantity::parse("1Ei").map(|q| q.to_millis()),
            Ok(Err(QuantityError::TooLarge { .. }))
        ));
        assert!(matches!(
            Quantity::parse("1e400").map(|q| q.to_units()),
            Ok(Err(QuantityError::TooLarge { .. }))
        ));
        let negative = Quantity::parse("-500m").map_err(|e| e.to_string());
        assert_eq!(negative.as_ref().map(|q| q.is_negative()), Ok(true));
        assert!(matches!(
            negative.map(|q| q.to_millis()),
            Ok(Err(QuantityError::Negative { .. }))
        ));
    }

    #[test]
    fn numbers_from_yaml_become_quantities() {
        let cases: &[(&str, &str)] = &[
            ("1", "1"),
            ("0.5", "0.5"),
            ("129e6", "129000000"),
            ("\"2Gi\"", "2Gi"),
        ];
        for (json, text) in cases {
            let parsed: Quantity =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(parsed.as_str(), *text);
        }
        assert!(serde_json::from_str::<Quantity>("true").is_err());
        assert!(serde_json::from_str::<Quantity>("\"12Q\"").is_err());
    }

    #[test]
    fn millis_comparison_is_exact_enough() {
        let q = |t: &str| Quantity::parse(t).map_err(|e| e.to_string());
        let (half, five_hundred_milli) = (q("0.5"), q("500m"));
        assert_eq!(
            half.and_then(|a| five_hundred_milli.map(|b| a.millis_cmp(&b))),
            Ok(Some(std::cmp::Ordering::Equal))
        );
    }
}
