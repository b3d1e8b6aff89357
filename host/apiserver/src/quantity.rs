//! Kubernetes resource quantities (`resource.Quantity`): parsed exactly, in nano units, as
//! `resource.ParseQuantity` reads them, added, compared, and written back in the canonical form
//! `Quantity.String` gives (`500m`, `1Gi`, `2`), which quota usage, limit ranges and the CEL
//! quantity library share.

const NANOS: i128 = 1_000_000_000;

/// A `resource.Quantity`'s value, in nano units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub(crate) i128);

/// Why a string is not a quantity (`resource.ParseQuantity`'s errors).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantityError {
    /// It does not have a quantity's shape.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    /// Its value is out of the range held here.
    #[error("unable to parse quantity's numeric part")]
    Numeric,
}

/// The multiplier of a suffix as (power of ten, power of 1024).
fn suffix(text: &str) -> Option<(i32, u32)> {
    Some(match text {
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
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        _ => {
            let exponent = text.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (exponent.parse().ok()?, 0)
        }
    })
}

impl Quantity {
    /// Parses a quantity as `resource.ParseQuantity` does (a value below `1n` rounds up to it).
    ///
    /// # Errors
    /// [`QuantityError`] when `text` is not a quantity.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, unit) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(QuantityError::Format);
        }
        let (ten, binary) = suffix(unit).ok_or(QuantityError::Format)?;
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(digit - b'0')))
                .ok_or(QuantityError::Numeric)?;
        }
        mantissa = mantissa
            .checked_mul(1_i128 << (10 * binary))
            .ok_or(QuantityError::Numeric)?;
        // value = mantissa × 10^(ten - fraction digits); in nanos, × 10^9 more.
        let scale = ten + 9 - i32::try_from(fraction.len()).map_err(|_| QuantityError::Numeric)?;
        let nanos = if scale >= 0 {
            let factor = 10_i128
                .checked_pow(scale.unsigned_abs())
                .ok_or(QuantityError::Numeric)?;
            mantissa.checked_mul(factor).ok_or(QuantityError::Numeric)?
        } else {
            match 10_i128.checked_pow(scale.unsigned_abs()) {
                Some(divisor) => (mantissa + divisor - 1) / divisor,
                None => i128::from(mantissa > 0),
            }
        };
        Ok(Self(if negative { -nanos } else { nanos }))
    }
}

impl Quantity {
    /// The value in nano units.
    #[must_use]
    pub fn nanos(self) -> i128 {
        self.0
    }

    /// A quantity of `nanos` nano units.
    #[must_use]
    pub fn from_nanos(nanos: i128) -> Self {
        Self(nanos)
    }

    /// The canonical text of the value in `format` (`CanonicalizeBytes`): a whole binary value
    /// with the largest power-of-1024 suffix that divides it, any other value with the largest
    /// decimal suffix (`k`...`E`, or `m`, `u`, `n` for fractions) that keeps it whole.
    #[must_use]
    pub fn canonical(self, format: Format) -> String {
        let (sign, nanos) = if self.0 < 0 {
            ("-", -self.0)
        } else {
            ("", self.0)
        };
        if format == Format::BinarySi && nanos % NANOS == 0 {
            let whole = nanos / NANOS;
            if whole >= 1024 {
                for (power, suffix) in [
                    (6, "Ei"),
                    (5, "Pi"),
                    (4, "Ti"),
                    (3, "Gi"),
                    (2, "Mi"),
                    (1, "Ki"),
                ] {
                    let unit = 1_i128 << (10 * power);
                    if whole % unit == 0 {
                        return format!("{sign}{}{suffix}", whole / unit);
                    }
                }
            }
            return format!("{sign}{whole}");
        }
        for (exponent, suffix) in [
            (27, "E"),
            (24, "P"),
            (21, "T"),
            (18, "G"),
            (15, "M"),
            (12, "k"),
            (9, ""),
            (6, "m"),
            (3, "u"),
        ] {
            let unit = 10_i128.pow(exponent);
            if nanos % unit == 0 && (nanos != 0 || exponent == 9) {
                return format!("{sign}{}{suffix}", nanos / unit);
            }
        }
        format!("{sign}{nanos}n")
    }
}

/// How a quantity is written (`resource.Format`); a value keeps the format it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Powers of 1024 (`Ki`, `Mi`, ...).
    BinarySi,
    /// Powers of 1000 (`m`, `k`, `M`, ...) and exponents.
    DecimalSi,
}

impl Format {
    /// The format of a quantity as written: binary for a `Ki`...`Ei` suffix.
    #[must_use]
    pub fn of(text: &str) -> Self {
        if text.ends_with('i') {
            Self::BinarySi
        } else {
            Self::DecimalSi
        }
    }
}

/// Adds `value` (written in `format`) to `total` as `quota.Add` does: a zero total takes the
/// format of what is added to it, any other keeps its own.
pub fn add(total: &mut (Quantity, Format), value: Quantity, format: Format) {
    if total.0.0 == 0 {
        total.1 = format;
    }
    total.0 = Quantity(total.0.0 + value.0);
}

/// Sums quantities as `quota.Add` does ([`add`]): the result keeps the format of the first
/// non-zero value. `None` when one is not a quantity.
#[must_use]
pub fn sum<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<(Quantity, Format)> {
    let mut total = (Quantity(0), Format::DecimalSi);
    for text in texts {
        add(&mut total, Quantity::parse(text).ok()?, Format::of(text));
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_written_as_kubernetes_writes_them() {
        let text = |texts: &[&str]| {
            let (q, f) = sum(texts.iter().copied()).unwrap();
            q.canonical(f)
        };
        assert_eq!(text(&["250m", "250m"]), "500m");
        assert_eq!(text(&["500m", "500m"]), "1");
        assert_eq!(text(&["512Mi", "512Mi"]), "1Gi");
        assert_eq!(text(&["512Mi", "1Mi"]), "513Mi");
        assert_eq!(text(&["1Gi"]), "1Gi");
        assert_eq!(text(&[]), "0");
        assert_eq!(text(&["2000"]), "2k");
        assert_eq!(text(&["100"]), "100");
        assert_eq!(
            Quantity::parse("1.5").unwrap().canonical(Format::DecimalSi),
            "1500m"
        );
        assert!(sum(["1x"]).is_none());
    }
}
