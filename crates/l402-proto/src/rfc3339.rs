//! RFC 3339 timestamps, as the `Payment` scheme carries its `expires` and receipts their `timestamp`: written
//! in UTC to the second (`2026-03-15T12:05:00Z`, what Aperture writes), read with any offset and fraction (what
//! Go's `time.Parse(time.RFC3339, ..)` accepts, so what a peer may send). Pure: Unix seconds in and out.

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `unix` seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(unix: u64) -> String {
    let secs = unix as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |n, &b| n.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

/// Reads an RFC 3339 timestamp (`T` or `t`, `Z`, `z` or `±HH:MM`, an optional fraction, which is dropped) as
/// Unix seconds. `None` for anything else, or a time before 1970.
pub fn parse(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, sec) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d == 0 || d > month_days[mo as usize - 1] || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let (oh, om) = (digits(&[*oh1, *oh2])?, digits(&[*om1, *om2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let t = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec.min(59)) - offset;
    u64::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aperture_s_timestamps_read_and_write_back() {
        // 2026-03-15T12:05:00Z, the vectors' expiry.
        assert_eq!(parse("2026-03-15T12:05:00Z"), Some(1_773_576_300));
        assert_eq!(format_utc(1_773_576_300), "2026-03-15T12:05:00Z");
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse("2024-02-29T23:59:59Z"), Some(1_709_251_199));
        assert_eq!(parse("2026-03-15T14:05:00.123+02:00"), Some(1_773_576_300));
        assert_eq!(parse("2026-03-15t10:05:00-02:00"), Some(1_773_576_300));
    }

    #[test]
    fn every_second_of_four_centuries_round_trips_by_day() {
        for day in (0..146_097 * 2).step_by(7) {
            let t = day * 86_400 + 3_723;
            assert_eq!(parse(&format_utc(t)), Some(t), "{}", format_utc(t));
        }
    }

    #[test]
    fn what_is_not_rfc_3339_is_refused() {
        for bad in [
            "",
            "2026-03-15",
            "2026-03-15 12:05:00Z",
            "2026-13-15T12:05:00Z",
            "2026-02-29T12:05:00Z",
            "2026-03-15T24:05:00Z",
            "2026-03-15T12:05:00",
            "2026-03-15T12:05:00+0200",
            "2026-03-15T12:05:00.Z",
            "+026-03-15T12:05:00Z",
            "1969-12-31T23:59:59Z",
            "2026-03-15T12:05:00Z ",
            "２026-03-15T12:05:00Z",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
