//! Durations as cloudflared's config accepts them: Go's `time.ParseDuration` syntax.
//!
//! `30s`, `1m30s`, `90s`, `1.5h`, `250ms`, `0`. A unit is required on every number except a bare
//! `0`. cloudflared decodes YAML with `yaml.v3`, which refuses a plain integer for a duration, so a
//! plain `30` is refused here too, with a hint, rather than silently read as seconds or
//! nanoseconds. Negative durations are refused: every duration in the config is a timeout.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration read from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// Parses Go duration syntax (`1h2m3.5s`, units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.starts_with('-') {
        return Err(format!("negative duration {text:?} is not allowed"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!(
            "duration {text:?} has no unit; write it like \"{s}s\", \"1m30s\" or \"500ms\""
        ));
    }
    let mut rest = s;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(format!("invalid duration {text:?}"));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("missing unit in duration {text:?}")),
            other => return Err(format!("unknown unit {other:?} in duration {text:?}")),
        };
        total_nanos += value * scale;
        rest = next;
    }
    // Go's limit: an i64 of nanoseconds, about 292 years.
    if total_nanos > i64::MAX as f64 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like \"30s\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(ConfigDuration).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if v == 0 {
                    return Ok(ConfigDuration(Duration::ZERO));
                }
                Err(E::custom(format!(
                    "plain number {v} is not a duration (cloudflared refuses it too); \
                     write it with a unit, like \"{v}s\""
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("negative duration {v} is not allowed"))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "plain number {v} is not a duration; write it with a unit, like \"{v}s\""
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        match parse_duration(s) {
            Ok(d) => d,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    #[test]
    fn cloudflared_forms() {
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("1h2m3s"), Duration::from_secs(3723));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("+5s"), Duration::from_secs(5));
    }

    #[test]
    fn refused_forms() {
        for bad in ["", "30", "1.5", "-1s", "s", "10x", "1m30", ".s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        let err = parse_duration("30").err().unwrap_or_default();
        assert!(err.contains("\"30s\""), "hint missing: {err}");
    }

    #[test]
    fn yaml_plain_integer_is_refused_with_a_hint() {
        let r: Result<ConfigDuration, _> = serde_yaml_ng::from_str("30");
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("\"30s\""), "{msg}");
        let r: Result<ConfigDuration, _> = serde_yaml_ng::from_str("1m30s");
        assert_eq!(r.ok(), Some(ConfigDuration(Duration::from_secs(90))));
        let r: Result<ConfigDuration, _> = serde_yaml_ng::from_str("0");
        assert_eq!(r.ok(), Some(ConfigDuration(Duration::ZERO)));
    }
}
