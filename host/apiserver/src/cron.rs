//! Cron schedules as a CronJob's `spec.schedule` is read by Kubernetes (robfig/cron v3's
//! `ParseStandard`): five fields (minute, hour, day of month, month, day of week) of numbers,
//! names (`jan`, `mon`), `*`/`?`, ranges, steps and lists, or a descriptor (`@hourly`, `@daily`,
//! `@every 90m`); the errors say what robfig's parser says, which is what kube-apiserver answers.

use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Set in a field's bits when it was `*` or `?` (robfig's `starBit`): a day-of-month or
/// day-of-week field that is a star makes the days match both fields, else either.
const STAR: u64 = 1 << 63;
/// How far [`Schedule::next_after`] looks before it gives up, as robfig does (five years).
const HORIZON_YEARS: i16 = 5;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Why a schedule does not parse; the text is robfig/cron's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Nothing to parse.
    #[error("empty spec string")]
    Empty,
    /// Not five fields.
    #[error("expected exactly 5 fields, found {found}: [{fields}]")]
    FieldCount {
        /// How many there were.
        found: usize,
        /// The fields, space-separated.
        fields: String,
    },
    /// A number that is not one.
    #[error("failed to parse int from {0}: strconv.Atoi: parsing \"{0}\": invalid syntax")]
    NotANumber(String),
    /// `a-b-c`.
    #[error("too many hyphens: {0}")]
    TooManyHyphens(String),
    /// `a/b/c`.
    #[error("too many slashes: {0}")]
    TooManySlashes(String),
    /// A start below the field's minimum.
    #[error("beginning of range ({start}) below minimum ({min}): {expr}")]
    BelowMinimum {
        /// The start given.
        start: u32,
        /// The field's minimum.
        min: u32,
        /// The expression.
        expr: String,
    },
    /// An end above the field's maximum.
    #[error("end of range ({end}) above maximum ({max}): {expr}")]
    AboveMaximum {
        /// The end given.
        end: u32,
        /// The field's maximum.
        max: u32,
        /// The expression.
        expr: String,
    },
    /// A range whose start is past its end.
    #[error("beginning of range ({start}) beyond end of range ({end}): {expr}")]
    Reversed {
        /// The start.
        start: u32,
        /// The end.
        end: u32,
        /// The expression.
        expr: String,
    },
    /// A step of zero.
    #[error("step of range should be a positive number: {0}")]
    ZeroStep(String),
    /// An `@` word robfig does not know.
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    /// A `TZ=`/`CRON_TZ=` prefix naming a zone this machine does not know.
    #[error("provided bad location {0}: unknown time zone {0}")]
    Location(String),
    /// `@every` with what Go's `time.ParseDuration` refuses.
    #[error("failed to parse duration {0}: time: invalid duration \"{1}\"")]
    Duration(String, String),
}

/// A parsed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Five fields, each a bit set of the values it matches.
    Fields {
        /// Minutes 0–59.
        minute: u64,
        /// Hours 0–23.
        hour: u64,
        /// Days of the month 1–31.
        dom: u64,
        /// Months 1–12.
        month: u64,
        /// Days of the week 0–6, Sunday first.
        dow: u64,
    },
    /// `@every D`: every D from the last run, rounded down to the second, at least a second.
    Every(SignedDuration),
}

/// The values `[min, max]` a field may take, and its names.
struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of the first name.
    first_name: u32,
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &MONTHS,
    first_name: 1,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &DAYS,
    first_name: 0,
};

/// `mustParseInt` (what `strconv.Atoi` accepts: an optional sign and digits).
fn number(expr: &str) -> Result<u32, CronError> {
    let digits = expr.strip_prefix('+').unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CronError::NotANumber(expr.to_owned()));
    }
    digits
        .parse()
        .map_err(|_| CronError::NotANumber(expr.to_owned()))
}

/// `parseIntOrName`.
fn number_or_name(expr: &str, bounds: &Bounds) -> Result<u32, CronError> {
    let lower = expr.to_ascii_lowercase();
    match bounds.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(bounds.first_name + u32::try_from(i).unwrap_or(0)),
        None => number(expr),
    }
}

/// `getRange`: one comma-separated part of a field.
fn range(expr: &str, bounds: &Bounds) -> Result<u64, CronError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut extra) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (bounds.min, bounds.max, STAR)
    } else {
        let start = number_or_name(low_and_high[0], bounds)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => number_or_name(low_and_high[1], bounds)?,
            _ => return Err(CronError::TooManyHyphens(expr.to_owned())),
        };
        (start, end, 0)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = number(range_and_step[1])?;
            // `N/step` means `N-max/step`.
            if single {
                end = bounds.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(CronError::TooManySlashes(expr.to_owned())),
    };
    if start < bounds.min {
        return Err(CronError::BelowMinimum {
            start,
            min: bounds.min,
            expr: expr.to_owned(),
        });
    }
    if end > bounds.max {
        return Err(CronError::AboveMaximum {
            end,
            max: bounds.max,
            expr: expr.to_owned(),
        });
    }
    if start > end {
        return Err(CronError::Reversed {
            start,
            end,
            expr: expr.to_owned(),
        });
    }
    if step == 0 {
        return Err(CronError::ZeroStep(expr.to_owned()));
    }
    let bits = (start..=end)
        .step_by(usize::try_from(step).unwrap_or(usize::MAX))
        .fold(0u64, |bits, v| bits | 1 << v);
    Ok(bits | extra)
}

/// `getField`: a comma-separated list of ranges.
fn field(text: &str, bounds: &Bounds) -> Result<u64, CronError> {
    text.split(',')
        .try_fold(0, |bits, part| Ok(bits | range(part, bounds)?))
}

/// Go's `time.ParseDuration` for what `@every` is given: signed, decimal numbers with units
/// `h`, `m`, `s`, `ms`, `us`/`µs`, `ns`.
fn go_duration(text: &str) -> Option<SignedDuration> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        nanos += value * scale;
        rest = &rest[unit_len..];
    }
    let nanos = if negative { -nanos } else { nanos };
    // Within ±292 years, so the conversion below cannot overflow.
    (nanos.abs() < 9.2e18).then(|| SignedDuration::from_nanos(nanos as i64))
}

impl FromStr for Schedule {
    type Err = CronError;

    fn from_str(spec: &str) -> Result<Self, CronError> {
        if spec.is_empty() {
            return Err(CronError::Empty);
        }
        // A zone prefix is read and its zone checked; the schedule runs in it (robfig's `Parse`).
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let (prefix, rest) = spec.split_once(' ').unwrap_or((spec, ""));
            let zone = prefix.split_once('=').map_or("", |(_, z)| z);
            if zone != "UTC" && TimeZone::get(zone).is_err() {
                return Err(CronError::Location(zone.to_owned()));
            }
            return rest.trim().parse();
        }
        if let Some(word) = spec.strip_prefix('@') {
            let fields = match word {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    if let Some(text) = word.strip_prefix("every ") {
                        let duration = go_duration(text)
                            .ok_or_else(|| CronError::Duration(spec.to_owned(), text.to_owned()))?;
                        return Ok(Self::Every(duration));
                    }
                    return Err(CronError::Descriptor(spec.to_owned()));
                }
            };
            return fields.parse();
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount {
                found: fields.len(),
                fields: fields.join(" "),
            });
        }
        Ok(Self::Fields {
            minute: field(fields[0], &MINUTES)?,
            hour: field(fields[1], &HOURS)?,
            dom: field(fields[2], &DOM)?,
            month: field(fields[3], &MONTH)?,
            dow: field(fields[4], &DOW)?,
        })
    }
}

fn has(bits: u64, value: i8) -> bool {
    u8::try_from(value).is_ok_and(|v| v < 63 && bits & (1 << v) != 0)
}

impl Schedule {
    /// The first time after `after` the schedule fires, on the minute, counted in `zone`
    /// (robfig's `SpecSchedule.Next`); `None` when it never does within five years.
    #[must_use]
    pub fn next_after(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow) = match *self {
            Self::Every(every) => {
                // `ConstantDelaySchedule`: at least a second, whole seconds.
                let secs = every.as_secs().max(1);
                let from = after.as_second();
                return Timestamp::from_second(from.checked_add(secs)?).ok();
            }
            Self::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (minute, hour, dom, month, dow),
        };
        let days_match = |date: jiff::civil::Date| {
            let in_month = has(dom, date.day());
            let in_week = has(dow, date.weekday().to_sunday_zero_offset());
            if dom & STAR != 0 || dow & STAR != 0 {
                in_month && in_week
            } else {
                in_month || in_week
            }
        };
        // The next whole minute after `after`, then hour by hour while the hour cannot match.
        let start = Timestamp::from_second(after.as_second().div_euclid(60) * 60 + 60).ok()?;
        let horizon = start
            .to_zoned(zone.clone())
            .year()
            .saturating_add(HORIZON_YEARS);
        let mut at = start.to_zoned(zone.clone());
        while at.year() <= horizon {
            let date = at.date();
            let hour_ok = has(month, date.month()) && days_match(date) && has(hour, at.hour());
            if hour_ok {
                if has(minute, at.minute()) {
                    return Some(at.timestamp());
                }
                at = at.checked_add(SignedDuration::from_mins(1)).ok()?;
            } else {
                // To the start of the next hour.
                let into = i64::from(at.minute()) * 60 + i64::from(at.second());
                at = at
                    .checked_add(SignedDuration::from_secs(3600 - into))
                    .ok()?;
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn next(spec: &str, after: &str) -> String {
        let schedule: Schedule = spec.parse().unwrap();
        let after: Timestamp = after.parse().unwrap();
        schedule
            .next_after(after, &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn schedules_fire_as_robfig_cron_fires_them() {
        assert_eq!(
            next("*/5 * * * *", "2026-01-01T10:02:30Z"),
            "2026-01-01T10:05:00Z"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2026-01-02T10:00:00Z"),
            "2026-01-05T09:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-01-01T10:00:00Z"),
            "2026-01-01T11:00:00Z"
        );
        assert_eq!(
            next("30 2 1 jan *", "2026-03-01T00:00:00Z"),
            "2027-01-01T02:30:00Z"
        );
        // Both day fields restricted: either matches (the 13th, or a Friday).
        assert_eq!(
            next("0 0 13 * 5", "2026-02-01T00:00:00Z"),
            "2026-02-06T00:00:00Z"
        );
        // One of them a star: both must match, so the day of the month decides.
        assert_eq!(
            next("0 0 13 * ?", "2026-02-01T00:00:00Z"),
            "2026-02-13T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("@every 90m", "2026-01-01T10:00:00Z"),
            "2026-01-01T11:30:00Z"
        );
        let never: Schedule = "0 0 30 2 *".parse().unwrap();
        assert_eq!(
            never.next_after(Timestamp::UNIX_EPOCH, &TimeZone::UTC),
            None
        );
    }

    #[test]
    fn a_time_zone_moves_the_hour() {
        let Ok(paris) = TimeZone::get("Europe/Paris") else {
            return; // no time zone database here: what a cluster without one does too
        };
        let schedule: Schedule = "0 9 * * *".parse().unwrap();
        let after: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            schedule.next_after(after, &paris).unwrap().to_string(),
            "2026-01-01T08:00:00Z"
        );
    }

    #[test]
    fn bad_schedules_say_what_robfig_says() {
        let error = |spec: &str| spec.parse::<Schedule>().unwrap_err().to_string();
        assert_eq!(error("bad"), "expected exactly 5 fields, found 1: [bad]");
        assert_eq!(
            error("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(
            error("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            error("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            error("5-2 * * * *"),
            "beginning of range (5) beyond end of range (2): 5-2"
        );
        assert_eq!(
            error("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            error("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(error("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(error("@often"), "unrecognized descriptor: @often");
        assert_eq!(
            error("@every soon"),
            "failed to parse duration @every soon: time: invalid duration \"soon\""
        );
        assert!("0 0 * * SUN".parse::<Schedule>().is_ok());
        assert!("TZ=UTC 0 * * * *".parse::<Schedule>().is_ok());
        assert_eq!(
            error("CRON_TZ=Nowhere/Land 0 * * * *"),
            "provided bad location Nowhere/Land: unknown time zone Nowhere/Land"
        );
    }
}
