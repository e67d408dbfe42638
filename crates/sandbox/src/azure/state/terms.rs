//! Plan terms: the term dates the marketplace reports and the seat quantities a plan takes.

use time::{Date, Duration, Month, OffsetDateTime, Time};

use crate::azure::config::PlanConfig;

/// Adds `months` calendar months, clamping the day to the month's length.
fn add_months(date: Date, months: i32) -> Date {
    let total = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months;
    let year = total.div_euclid(12);
    let month_number = u8::try_from(total.rem_euclid(12) + 1).unwrap_or(1);
    let month = Month::try_from(month_number).unwrap_or(Month::January);
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(date)
}

/// Term dates for a term starting `now`: start at midnight UTC, end the day before the same date
/// `term_unit` later (how the real API reports `term.endDate`).
pub fn term_dates(now: OffsetDateTime, term_unit: &str) -> (OffsetDateTime, OffsetDateTime) {
    let months = match term_unit {
        "P1Y" => 12,
        "P2Y" => 24,
        "P3Y" => 36,
        "P4Y" => 48,
        "P5Y" => 60,
        _ => 1,
    };
    let start_date = now.to_offset(time::UtcOffset::UTC).date();
    let start = start_date.with_time(Time::MIDNIGHT).assume_utc();
    let end = (add_months(start_date, months) - Duration::days(1))
        .with_time(Time::MIDNIGHT)
        .assume_utc();
    (start, end)
}

/// The quantity a plan takes: `None` for flat-rate plans, within [min, max] for per-seat ones.
pub fn check_quantity(plan: &PlanConfig, quantity: Option<i64>) -> Result<Option<i64>, String> {
    if !plan.is_price_per_seat {
        return match quantity {
            None => Ok(None),
            Some(_) => Err(format!("plan {} is not priced per seat", plan.id)),
        };
    }
    let q = quantity.unwrap_or(plan.min_quantity.unwrap_or(1));
    let min = plan.min_quantity.unwrap_or(1);
    let max = plan.max_quantity.unwrap_or(i64::from(i32::MAX));
    if q < min || q > max {
        return Err(format!(
            "quantity {q} is outside the plan's range {min}..={max}"
        ));
    }
    Ok(Some(q))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn terms_end_the_day_before() {
        let (s, e) = term_dates(datetime!(2026-01-31 10:00 UTC), "P1M");
        assert_eq!(s, datetime!(2026-01-31 00:00 UTC));
        assert_eq!(e, datetime!(2026-02-27 00:00 UTC));
        let (_, e) = term_dates(datetime!(2026-03-01 10:00 UTC), "P1Y");
        assert_eq!(e, datetime!(2027-02-28 00:00 UTC));
    }
}
