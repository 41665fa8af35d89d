//! How long a migration takes and what it costs, from a census and the
//! figures its engineer gives (bandwidth, prices, deadline).

use serde::Serialize;

/// Objects per second one passeur host sustains over a WAN link, measured:
/// 797–1,010 small objects/s at 20–100 ms per request between emulators
/// that saturate the machine first (bench/README.md, WAN). The default of
/// `--objects-per-second`.
pub const OBJECTS_PER_SECOND: f64 = 800.0;

/// What the engineer gives.
#[derive(Debug, Clone, Default)]
pub struct Assumptions {
    /// Link bandwidth, bytes per second (none: bytes not timed).
    pub bandwidth: Option<f64>,
    /// Objects per second per host.
    pub objects_per_second: f64,
    /// Egress price per byte read from the source.
    pub egress_per_byte: Option<f64>,
    /// Price per request written at the target (PUT, multipart).
    pub write_price: Option<f64>,
    /// Price per request read at the source (GET).
    pub read_price: Option<f64>,
    /// Seconds until the deadline, when one is given.
    pub seconds_to_deadline: Option<f64>,
}

/// Requests a copy of the census makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    /// Source reads: one GET per object, one ranged GET per part.
    pub reads: u64,
    /// Target writes: one PUT per object, or create + parts + complete.
    pub writes: u64,
}

/// The estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Requests of one full copy.
    pub requests: Requests,
    /// Seconds to move the bytes at the bandwidth (none without one).
    pub transfer_seconds: Option<f64>,
    /// Seconds one host needs for the objects at its object rate.
    pub object_seconds: f64,
    /// One host: the longer of the two.
    pub one_host_seconds: f64,
    /// Egress cost (none without a price).
    pub egress_cost: Option<f64>,
    /// Request cost (reads and writes that have a price).
    pub request_cost: Option<f64>,
    /// Hosts (shards) to finish by the deadline; none without a deadline,
    /// or when the bandwidth alone cannot meet it.
    pub hosts_for_deadline: Option<u64>,
    /// Why no host count, when a deadline was given.
    pub deadline_note: Option<String>,
    /// The objects per second per host assumed.
    pub objects_per_second: f64,
}

/// The estimate for `objects` objects of `bytes` bytes.
pub fn estimate(objects: u64, bytes: u64, requests: Requests, a: &Assumptions) -> Estimate {
    let transfer_seconds = a.bandwidth.filter(|b| *b > 0.0).map(|b| bytes as f64 / b);
    let rate = a.objects_per_second.max(f64::MIN_POSITIVE);
    let object_seconds = objects as f64 / rate;
    let one_host_seconds = transfer_seconds.unwrap_or(0.0).max(object_seconds);
    let request_cost = match (a.read_price, a.write_price) {
        (None, None) => None,
        (r, w) => Some(
            r.unwrap_or(0.0) * requests.reads as f64 + w.unwrap_or(0.0) * requests.writes as f64,
        ),
    };
    let (hosts_for_deadline, deadline_note) = match a.seconds_to_deadline {
        None => (None, None),
        Some(s) if s <= 0.0 => (None, Some("the deadline has passed".to_owned())),
        Some(s) if transfer_seconds.is_some_and(|t| t > s) => (
            None,
            Some(format!(
                "the bandwidth alone needs {} and the deadline is {} away: more hosts do not help",
                human_duration(transfer_seconds.unwrap_or(0.0)),
                human_duration(s)
            )),
        ),
        Some(s) => (Some(((object_seconds / s).ceil() as u64).max(1)), None),
    };
    Estimate {
        requests,
        transfer_seconds,
        object_seconds,
        one_host_seconds,
        egress_cost: a.egress_per_byte.map(|p| p * bytes as f64),
        request_cost,
        hosts_for_deadline,
        deadline_note,
        objects_per_second: a.objects_per_second,
    }
}

/// "3 d 4 h", "5 h 2 min", "12 min", "40 s".
pub fn human_duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A bandwidth such as "10Gbit/s", "800Mbps", "1.25GB/s", "100MiB/s", in
/// bytes per second.
pub fn parse_bandwidth(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let t = t
        .strip_suffix("ps")
        .map_or_else(|| t.to_owned(), |x| format!("{x}it"));
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bandwidth {s:?}: expected a number and a unit, e.g. 10Gbit/s"))?;
    let unit = unit.trim();
    let (scale, bits) = match unit {
        "bit" | "b" => (1.0, true),
        "kbit" | "Kbit" => (1e3, true),
        "Mbit" => (1e6, true),
        "Gbit" => (1e9, true),
        "Tbit" => (1e12, true),
        "B" => (1.0, false),
        "kB" | "KB" => (1e3, false),
        "MB" => (1e6, false),
        "GB" => (1e9, false),
        "TB" => (1e12, false),
        "KiB" => (1024.0, false),
        "MiB" => (1024.0 * 1024.0, false),
        "GiB" => (1024.0 * 1024.0 * 1024.0, false),
        _ => {
            return Err(format!(
                "bandwidth {s:?}: unknown unit {unit:?} (bit/s, Mbit/s, Gbit/s, MB/s, GB/s, MiB/s …)"
            ));
        }
    };
    let v = n * scale / if bits { 8.0 } else { 1.0 };
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(format!("bandwidth {s:?} must be above 0"))
    }
}

/// An egress price such as "0.087/GB", "20/TB", "0.09/GiB": per byte.
pub fn parse_egress_price(s: &str) -> Result<f64, String> {
    let (amount, unit) = split_price(s, "egress price", "0.087/GB")?;
    let per = match unit {
        "B" => 1.0,
        "GB" => 1e9,
        "TB" => 1e12,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("egress price {s:?}: per B, GB, TB, GiB or TiB")),
    };
    Ok(amount / per)
}

/// A request price such as "0.005/1000", "0.4/1M", "0.0044/10k": per
/// request.
pub fn parse_request_price(s: &str) -> Result<f64, String> {
    let (amount, unit) = split_price(s, "request price", "0.005/1000")?;
    let (num, scale) = match unit.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1e3),
        None => match unit.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (unit, 1.0),
        },
    };
    let n: f64 = if num.is_empty() {
        1.0
    } else {
        num.parse()
            .map_err(|_| format!("request price {s:?}: per a number of requests, e.g. /1000"))?
    };
    if n * scale <= 0.0 {
        return Err(format!("request price {s:?}: per a positive number"));
    }
    Ok(amount / (n * scale))
}

fn split_price<'a>(s: &'a str, what: &str, example: &str) -> Result<(f64, &'a str), String> {
    let (a, u) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{what} {s:?}: expected AMOUNT/UNIT, e.g. {example}"))?;
    let amount: f64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{what} {s:?}: {a:?} is not a number"))?;
    if !(amount >= 0.0 && amount.is_finite()) {
        return Err(format!("{what} {s:?}: must not be negative"));
    }
    Ok((amount, u.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_bandwidth("10Gbit/s"), Ok(1.25e9));
        assert_eq!(parse_bandwidth("800Mbps"), Ok(1e8));
        assert_eq!(parse_bandwidth("100MiB/s"), Ok(104_857_600.0));
        assert!(parse_bandwidth("10 furlongs").is_err());
        assert!(parse_bandwidth("0Gbit/s").is_err());
        assert_eq!(parse_egress_price("0.087/GB"), Ok(0.087 / 1e9));
        assert_eq!(parse_request_price("0.005/1000"), Ok(0.005 / 1000.0));
        assert_eq!(parse_request_price("0.4/1M"), Ok(0.4 / 1e6));
        assert_eq!(parse_request_price("0.0044/10k"), Ok(0.0044 / 1e4));
        assert!(parse_request_price("0.4").is_err());
        assert!(parse_egress_price("-1/GB").is_err());
    }

    #[test]
    fn hosts_follow_objects_bandwidth_does_not_divide() {
        let a = Assumptions {
            bandwidth: Some(1e9),
            objects_per_second: 1000.0,
            seconds_to_deadline: Some(86_400.0),
            egress_per_byte: Some(1e-9),
            write_price: Some(0.01),
            read_price: None,
        };
        // 10^9 objects at 1,000/s: 10^6 s, 11.6 days: 12 hosts for a day.
        let r = Requests {
            reads: 10,
            writes: 20,
        };
        let e = estimate(1_000_000_000, 10_000_000_000_000, r, &a);
        assert_eq!(e.transfer_seconds, Some(10_000.0));
        assert_eq!(e.hosts_for_deadline, Some(12));
        assert_eq!(e.egress_cost, Some(10_000.0));
        assert_eq!(e.request_cost, Some(0.2));
        // A day cannot carry 10^15 bytes at 1 GB/s, whatever the hosts.
        let e = estimate(1, 1_000_000_000_000_000, r, &a);
        assert_eq!(e.hosts_for_deadline, None);
        assert!(e.deadline_note.is_some());
        assert_eq!(human_duration(1_000_000.0), "11 d 13 h");
    }
}
