//! `resource.Quantity` strings (`"100m"`, `"1.5Gi"`, `"1e3"`) as integers.
//!
//! Kubernetes compares quantities exactly; so do these: the value is parsed
//! into an `i128` scaled by 1000 and rounded up as Go's `MilliValue` does,
//! never through floating point.

use thiserror::Error;

/// A quantity string that is not a valid `resource.Quantity`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parse a Kubernetes quantity and return its value multiplied by 1000, rounded up
/// (the `MilliValue` of the Go implementation): `"100m"` → 100, `"1"` → 1000, `"1Ki"` → 1024000.
pub fn parse_milli(q: &str) -> Result<i64, QuantityError> {
    let err = || QuantityError(q.to_string());
    let s = q.trim();
    if s.is_empty() {
        return Err(err());
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // value = digits * 10^(-frac_len) * base^exp; work in i128 with the value scaled by 1000.
    let digits: i128 = format!("{int_part}{frac_part}").parse().map_err(|_| err())?;
    let mut dec_exp: i32 = -(frac_part.len() as i32) + 3; // +3: milli
    let mut bin_mult: i128 = 1;
    match suffix {
        "" => {}
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        "Ki" => bin_mult = 1 << 10,
        "Mi" => bin_mult = 1 << 20,
        "Gi" => bin_mult = 1 << 30,
        "Ti" => bin_mult = 1 << 40,
        "Pi" => bin_mult = 1 << 50,
        "Ei" => bin_mult = 1 << 60,
        other if other.starts_with(['e', 'E']) => {
            let e: i32 = other[1..].parse().map_err(|_| err())?;
            if e.abs() > 30 {
                return Err(err());
            }
            dec_exp += e;
        }
        _ => return Err(err()),
    }
    let mut value = digits.checked_mul(bin_mult).ok_or_else(err)?;
    if dec_exp >= 0 {
        if dec_exp > 30 {
            return Err(err());
        }
        value = value.checked_mul(10i128.pow(dec_exp as u32)).ok_or_else(err)?;
    } else {
        let div = 10i128.checked_pow((-dec_exp) as u32).ok_or_else(err)?;
        value = (value + div - 1) / div; // round up, like MilliValue
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).map_err(|_| err())
}

/// Parse a quantity as a whole number of units (bytes, pods), rounding up.
pub fn parse_value(q: &str) -> Result<i64, QuantityError> {
    let milli = parse_milli(q)?;
    Ok(if milli >= 0 { (milli + 999) / 1000 } else { milli / 1000 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities_like_kubernetes() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("1"), Ok(1000));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli("2.5"), Ok(2500));
        assert_eq!(parse_milli("1u"), Ok(1)); // rounded up
        assert_eq!(parse_value("1Ki"), Ok(1024));
        assert_eq!(parse_value("128Mi"), Ok(128 << 20));
        assert_eq!(parse_value("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_value("1G"), Ok(1_000_000_000));
        assert_eq!(parse_value("1e3"), Ok(1000));
        assert_eq!(parse_value("110"), Ok(110));
        assert_eq!(parse_value("5k"), Ok(5000));
        for bad in ["", "abc", "1.2.3", "12Xi", "m", "1e"] {
            assert!(parse_milli(bad).is_err(), "{bad} should be rejected");
        }
    }
}
