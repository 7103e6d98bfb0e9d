//! Facts about host processes read from /proc: liveness and start time.

use std::fs;

/// Start time (clock ticks since boot, field 22) and state letter of `pid`.
pub fn stat(pid: i32) -> Option<(u64, char)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

fn parse_stat(s: &str) -> Option<(u64, char)> {
    // The command name (field 2) may contain spaces and parentheses; fields resume
    // after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// True when `pid` still runs the process that started at `start` and is not a zombie.
pub fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && matches!(stat(pid), Some((s, state)) if s == start && state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_parens() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 1000 10";
        assert_eq!(parse_stat(line), Some((777, 'S')));
    }

    #[test]
    fn self_is_alive() {
        let me = std::process::id() as i32;
        let (start, _) = stat(me).unwrap();
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
    }
}
