//! Usage quantities, counted exactly.
//!
//! Marketplaces price usage; we only count it, so no floating point is ever summed. A quantity
//! is a non-negative fixed-point number with six decimal places, stored as integer millionths.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

const SCALE: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity(i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidQuantity {
    #[error("quantity must not be negative")]
    Negative,
    #[error("quantity must be a finite number")]
    NotFinite,
    #[error("quantity is too large")]
    TooLarge,
    #[error("quantity has more than 6 decimal places")]
    TooPrecise,
    #[error("`{0}` is not a number")]
    NotANumber(String),
}

impl Quantity {
    pub const ZERO: Quantity = Quantity(0);

    /// A whole number of units.
    pub fn from_units(units: u32) -> Self {
        Self(i64::from(units) * SCALE)
    }

    /// From integer millionths of a unit, as stored in the database.
    pub fn from_micros(micros: i64) -> Result<Self, InvalidQuantity> {
        if micros < 0 {
            return Err(InvalidQuantity::Negative);
        }
        Ok(Self(micros))
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    /// From a JSON number; refuses NaN, infinities, negatives and more than 6 decimals.
    pub fn from_f64(value: f64) -> Result<Self, InvalidQuantity> {
        if !value.is_finite() {
            return Err(InvalidQuantity::NotFinite);
        }
        if value < 0.0 {
            return Err(InvalidQuantity::Negative);
        }
        // Go through the shortest decimal text so 0.1 stays 0.1 rather than 0.1000000000000000055.
        format!("{value}").parse()
    }

    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        self.0.checked_add(other.0).map(Quantity)
    }

    /// Whether this is a whole number of units (AWS `Quantity` accepts only integers).
    pub fn whole_units(self) -> Option<i64> {
        (self.0 % SCALE == 0).then_some(self.0 / SCALE)
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }
}

impl FromStr for Quantity {
    type Err = InvalidQuantity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let not_a_number = || InvalidQuantity::NotANumber(s.to_owned());
        if text.starts_with('-') {
            return Err(InvalidQuantity::Negative);
        }
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(not_a_number());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_a_number());
        }
        if frac.len() > 6 {
            return Err(InvalidQuantity::TooPrecise);
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| InvalidQuantity::TooLarge)?
        };
        let mut frac_micros: i64 = 0;
        for (i, digit) in frac.bytes().enumerate() {
            frac_micros += i64::from(digit - b'0') * 10_i64.pow(5 - i as u32);
        }
        whole
            .checked_mul(SCALE)
            .and_then(|w| w.checked_add(frac_micros))
            .map(Quantity)
            .ok_or(InvalidQuantity::TooLarge)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / SCALE;
        let frac = self.0 % SCALE;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{frac:06}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.whole_units() {
            Some(units) => serializer.serialize_i64(units),
            None => serializer.serialize_f64(self.as_f64()),
        }
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Neg(#[expect(dead_code, reason = "only its sign matters")] i64),
            Float(f64),
            Text(String),
        }
        let parsed = match Raw::deserialize(deserializer)? {
            Raw::Int(units) => i64::try_from(units)
                .ok()
                .and_then(|u| u.checked_mul(SCALE))
                .map(Quantity)
                .ok_or(InvalidQuantity::TooLarge),
            Raw::Neg(_) => Err(InvalidQuantity::Negative),
            Raw::Float(value) => Quantity::from_f64(value),
            Raw::Text(text) => text.parse(),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        assert_eq!("1.5".parse::<Quantity>().unwrap().micros(), 1_500_000);
        assert_eq!("0.000001".parse::<Quantity>().unwrap().micros(), 1);
        assert_eq!(".25".parse::<Quantity>().unwrap().to_string(), "0.25");
        assert_eq!("42".parse::<Quantity>().unwrap().to_string(), "42");
        assert_eq!(
            "0.0000001".parse::<Quantity>(),
            Err(InvalidQuantity::TooPrecise)
        );
        assert_eq!("-1".parse::<Quantity>(), Err(InvalidQuantity::Negative));
        assert!(matches!(
            "abc".parse::<Quantity>(),
            Err(InvalidQuantity::NotANumber(_))
        ));
        assert!(matches!(
            ".".parse::<Quantity>(),
            Err(InvalidQuantity::NotANumber(_))
        ));
    }

    #[test]
    fn floats_are_checked() {
        assert_eq!(Quantity::from_f64(0.1).unwrap().micros(), 100_000);
        assert_eq!(
            Quantity::from_f64(f64::NAN),
            Err(InvalidQuantity::NotFinite)
        );
        assert_eq!(
            Quantity::from_f64(f64::INFINITY),
            Err(InvalidQuantity::NotFinite)
        );
        assert_eq!(Quantity::from_f64(-0.5), Err(InvalidQuantity::Negative));
        assert_eq!(Quantity::from_f64(1e300), Err(InvalidQuantity::TooLarge));
        assert_eq!(Quantity::from_f64(0.0).unwrap(), Quantity::ZERO);
    }

    #[test]
    fn serde_round_trip() {
        let q: Quantity = serde_json::from_str("3").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "3");
        let q: Quantity = serde_json::from_str("2.75").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "2.75");
        assert!(serde_json::from_str::<Quantity>("-3").is_err());
        assert_eq!(q.whole_units(), None);
        assert_eq!(Quantity::from_units(7).whole_units(), Some(7));
    }
}
