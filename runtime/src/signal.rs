//! Signal names and numbers as `kill` accepts them: `9`, `KILL`, `SIGKILL`, `sigkill`.

use nix::sys::signal::Signal;

/// An unknown signal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown signal {0:?}")]
pub struct BadSignal(pub String);

/// Parses a signal for `kill`.
pub fn parse(s: &str) -> Result<i32, BadSignal> {
    let bad = || BadSignal(s.to_owned());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN+") {
        let n: i32 = rt.parse().map_err(|_| bad())?;
        let sig = libc::SIGRTMIN() + n;
        return if sig <= libc::SIGRTMAX() {
            Ok(sig)
        } else {
            Err(bad())
        };
    }
    name.parse::<Signal>().map(|s| s as i32).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("KILL"), Ok(9));
        assert_eq!(parse("SIGTERM"), Ok(15));
        assert_eq!(parse("hup"), Ok(1));
        assert_eq!(parse("RTMIN+1"), Ok(libc::SIGRTMIN() + 1));
        assert!(parse("NOPE").is_err());
        assert!(parse("0").is_err());
        assert!(parse("999").is_err());
    }
}
