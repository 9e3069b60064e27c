//! Numbers with units, as users write them in topology files and on the command line:
//! sizes (`256M`), rates (`10mbit`), times (`50ms`) and percentages (`1%`). Each parser
//! returns the base unit the kernel interfaces take, or a message that names the input.

/// Splits `"1.5G"` into 1.5 and `"g"`; `example` says what was expected, in the error.
fn number(s: &str, example: &str) -> Result<(f64, String), String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value = num.parse().map_err(|_| format!("`{s}` is not {example}"))?;
    Ok((value, unit.trim().to_ascii_lowercase()))
}

/// `"256M"`, `"1G"`, `"512k"`, `"1.5g"`, `"100MiB"`, `"4096"`: binary multiples, as Docker
/// reads them. Returns bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (value, unit) = number(s, "a size such as \"256M\" or \"1G\"")?;
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use K, M, G or T")),
    };
    Ok((value * mult as f64) as u64)
}

/// `"10mbit"`, `"1gbit"`, `"500kbit"`, `"100bit"` (tc's decimal units), or bytes per second
/// with `"kbps"`, `"mbps"`. Returns bits per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let (value, unit) = number(s, "a rate such as \"10mbit\"")?;
    let mult = match unit.as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return Err(format!("`{s}`: unknown rate unit `{unit}`; use bit, kbit, mbit, gbit (or bps, kbps, mbps)")),
    };
    let bps = (value * mult) as u64;
    if bps < 8 {
        return Err(format!("`{s}` is too slow a rate"));
    }
    Ok(bps)
}

/// `"50ms"`, `"1s"`, `"250us"`. Returns microseconds.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let (value, unit) = number(s, "a time such as \"50ms\"")?;
    let mult = match unit.as_str() {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" | "min" => 60e6,
        "h" => 3600e6,
        _ => return Err(format!("`{s}`: unknown time unit `{unit}`; use us, ms, s, m or h")),
    };
    Ok((value * mult) as u64)
}

/// `"1%"`, `"0.1%"`, or a number of percent. Returns parts per million.
pub fn parse_percent(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_end_matches('%');
    let v: f64 = t.parse().map_err(|_| format!("`{s}` is not a percentage such as \"1%\""))?;
    percent_ppm(v).ok_or_else(|| format!("`{s}` is not between 0% and 100%"))
}

/// Percent to parts per million; `None` outside 0 to 100.
pub fn percent_ppm(v: f64) -> Option<u32> {
    (0.0..=100.0).contains(&v).then(|| (v * 10_000.0).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12Q").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn rates_times_and_percentages() {
        assert_eq!(parse_rate("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_rate("100kbps"), Ok(800_000));
        assert!(parse_rate("10 furlongs").is_err());
        assert_eq!(parse_time("50ms"), Ok(50_000));
        assert_eq!(parse_time("1s"), Ok(1_000_000));
        assert_eq!(parse_time("250us"), Ok(250));
        assert_eq!(parse_time("10m"), Ok(600_000_000));
        assert_eq!(parse_time("1h"), Ok(3_600_000_000));
        assert_eq!(parse_percent("1%"), Ok(10_000));
        assert_eq!(parse_percent("0.1%"), Ok(1_000));
        assert_eq!(parse_percent("100"), Ok(1_000_000));
        assert!(parse_percent("150%").is_err());
    }
}
