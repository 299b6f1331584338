//! Calendars that SLA clocks count in: round the clock (24×7), or business hours in a
//! fixed UTC offset with public holidays and make-up working days (调休). Mainland China
//! has used UTC+8 without daylight saving since 1991, so a fixed offset is exact for
//! Asia/Shanghai. Holiday lists are data: a district loads the year's official schedule.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset, Weekday};

/// How far a calendar walks looking for working time before giving up; a calendar with
/// no working time at all yields deadlines at this horizon instead of looping forever.
const MAX_DAYS: i64 = 3660;

/// One working window of a day, local time, `open < close`; written `"09:00"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(with = "hm")]
    pub open: Time,
    #[serde(with = "hm")]
    pub close: Time,
}

/// Business hours: working windows on working days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessHours {
    /// Offset of local time from UTC, in whole hours (8 for Asia/Shanghai).
    pub utc_offset_hours: i8,
    /// Working windows of a working day, in order, not overlapping (e.g. 09:00–12:00 and
    /// 13:30–18:00).
    pub windows: Vec<Window>,
    /// Weekdays that are working days unless listed as holidays; written `"mon"` …
    #[serde(with = "weekdays")]
    pub workdays: Vec<Weekday>,
    /// Public holidays: no work even on a weekday; written `"2025-10-01"`.
    #[serde(default, with = "dates")]
    pub holidays: BTreeSet<Date>,
    /// Make-up working days (调休): work even on a weekend.
    #[serde(default, with = "dates")]
    pub makeup_workdays: BTreeSet<Date>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Calendar {
    /// Every second counts (emergencies, the 83012 rapid response).
    AlwaysOpen,
    Business(BusinessHours),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("utc offset {0} h is out of range")]
    Offset(i8),
    #[error("window {open}–{close} is empty or out of order")]
    Window { open: Time, close: Time },
    #[error("a business calendar needs at least one window")]
    NoWindows,
}

impl Calendar {
    /// Check a calendar read from data.
    pub fn validate(&self) -> Result<(), CalendarError> {
        let Calendar::Business(b) = self else {
            return Ok(());
        };
        UtcOffset::from_hms(b.utc_offset_hours, 0, 0)
            .map_err(|_| CalendarError::Offset(b.utc_offset_hours))?;
        if b.windows.is_empty() {
            return Err(CalendarError::NoWindows);
        }
        let mut last = Time::MIDNIGHT;
        for (i, w) in b.windows.iter().enumerate() {
            if w.open >= w.close || (i > 0 && w.open < last) {
                return Err(CalendarError::Window {
                    open: w.open,
                    close: w.close,
                });
            }
            last = w.close;
        }
        Ok(())
    }

    /// The instant `counted` seconds of this calendar's time after `start`.
    pub fn add(&self, start: OffsetDateTime, counted: i64) -> OffsetDateTime {
        match self {
            Calendar::AlwaysOpen => start + Duration::seconds(counted),
            Calendar::Business(b) => b.add(start, counted.max(0)),
        }
    }

    /// Seconds of this calendar's time between `from` and `to` (0 if `to <= from`).
    pub fn counted(&self, from: OffsetDateTime, to: OffsetDateTime) -> i64 {
        if to <= from {
            return 0;
        }
        match self {
            Calendar::AlwaysOpen => (to - from).whole_seconds(),
            Calendar::Business(b) => b.counted(from, to),
        }
    }
}

impl BusinessHours {
    fn offset(&self) -> UtcOffset {
        UtcOffset::from_hms(self.utc_offset_hours, 0, 0).unwrap_or(UtcOffset::UTC)
    }

    pub fn is_workday(&self, d: Date) -> bool {
        self.makeup_workdays.contains(&d)
            || (!self.holidays.contains(&d) && self.workdays.contains(&d.weekday()))
    }

    /// The working windows of local date `d` as UTC-comparable instants.
    fn windows_of(&self, d: Date) -> impl Iterator<Item = (OffsetDateTime, OffsetDateTime)> + '_ {
        let offset = self.offset();
        let work = self.is_workday(d);
        self.windows.iter().filter(move |_| work).map(move |w| {
            (
                d.with_time(w.open).assume_offset(offset),
                d.with_time(w.close).assume_offset(offset),
            )
        })
    }

    fn add(&self, start: OffsetDateTime, mut left: i64) -> OffsetDateTime {
        let mut day = start.to_offset(self.offset()).date();
        for _ in 0..MAX_DAYS {
            for (open, close) in self.windows_of(day) {
                if close <= start {
                    continue;
                }
                let from = open.max(start);
                let avail = (close - from).whole_seconds();
                if left <= avail {
                    return from + Duration::seconds(left);
                }
                left -= avail;
            }
            match day.next_day() {
                Some(d) => day = d,
                None => break,
            }
        }
        start + Duration::days(MAX_DAYS)
    }

    fn counted(&self, from: OffsetDateTime, to: OffsetDateTime) -> i64 {
        let mut day = from.to_offset(self.offset()).date();
        let last = to.to_offset(self.offset()).date();
        let mut total = 0;
        for _ in 0..MAX_DAYS {
            for (open, close) in self.windows_of(day) {
                let (a, b) = (open.max(from), close.min(to));
                if b > a {
                    total += (b - a).whole_seconds();
                }
            }
            if day >= last {
                break;
            }
            match day.next_day() {
                Some(d) => day = d,
                None => break,
            }
        }
        total
    }
}

/// `"HH:MM"` for window times.
mod hm {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use time::Time;
    use time::macros::format_description;

    pub fn serialize<S: Serializer>(t: &Time, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:02}:{:02}", t.hour(), t.minute()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let text = String::deserialize(d)?;
        Time::parse(&text, format_description!("[hour]:[minute]"))
            .map_err(|e| D::Error::custom(format!("time {text:?}: {e} (use HH:MM)")))
    }
}

/// `["2025-10-01", …]` for holiday lists.
mod dates {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::collections::BTreeSet;
    use time::Date;
    use time::macros::format_description;

    pub fn serialize<S: Serializer>(v: &BTreeSet<Date>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<Date>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|text| {
                Date::parse(&text, format_description!("[year]-[month]-[day]"))
                    .map_err(|e| D::Error::custom(format!("date {text:?}: {e} (use YYYY-MM-DD)")))
            })
            .collect()
    }
}

/// `["mon", "tue", …]` for working weekdays.
mod weekdays {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use time::Weekday;

    const NAMES: [(&str, Weekday); 7] = [
        ("mon", Weekday::Monday),
        ("tue", Weekday::Tuesday),
        ("wed", Weekday::Wednesday),
        ("thu", Weekday::Thursday),
        ("fri", Weekday::Friday),
        ("sat", Weekday::Saturday),
        ("sun", Weekday::Sunday),
    ];

    pub fn serialize<S: Serializer>(v: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .filter_map(|w| NAMES.iter().find(|(_, d)| d == w).map(|(n, _)| *n)),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|text| {
                NAMES
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&text))
                    .map(|(_, d)| *d)
                    .ok_or_else(|| D::Error::custom(format!("weekday {text:?}: use mon … sun")))
            })
            .collect()
    }
}
