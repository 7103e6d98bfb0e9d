//! Rendering an error with its causes on one line, the way runc and crun print them.

use std::error::Error;

/// `outer: cause: root cause`.
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !text.is_empty() && !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot mount on /data")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_causes() {
        let e = Outer(std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            chain(&e),
            "cannot mount on /data: No such file or directory (os error 2)"
        );
    }
}
