//! Parsing of `/proc/<pid>/mountinfo` (see proc(5)).

/// One mount, as the checker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount point, relative to the process's root.
    pub target: String,
    /// Root of the mount within its filesystem (differs from "/" for binds).
    pub root: String,
    pub fstype: String,
    pub source: String,
    /// Per-mount options followed by per-superblock options, comma-separated.
    pub options: String,
}

/// Parses a whole mountinfo file, skipping malformed lines.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// Parses one mountinfo line:
/// `id parent maj:min root mount_point mount_opts [optional...] - fstype source super_opts`.
pub fn parse_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    if sep < 6 || fields.len() < sep + 3 {
        return None;
    }
    let mount_opts = fields[5];
    let super_opts = fields.get(sep + 3).copied().unwrap_or("");
    let options = if super_opts.is_empty() {
        mount_opts.to_string()
    } else {
        format!("{mount_opts},{super_opts}")
    };
    Some(Mount {
        target: unescape(fields[4]),
        root: unescape(fields[3]),
        fstype: unescape(fields[sep + 1]),
        source: unescape(fields[sep + 2]),
        options: unescape(&options),
    })
}

/// Undoes the kernel's octal escaping (`\040` for space, `\011`, `\012`, `\134`).
pub fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && is_octal_triplet(&bytes[i + 1..i + 4]) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_octal_triplet(b: &[u8]) -> bool {
    b.len() == 3 && b[0] <= b'3' && b.iter().all(|c| (b'0'..=b'7').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 259:1 / / ro,relatime shared:1 - ext4 /dev/vda rw,errors=remount-ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
24 22 0:5 / /dev rw,nosuid master:2 shared:3 - tmpfs tmpfs rw,size=65536k,mode=755
40 22 259:1 /srv/my\\040dir /mnt/a\\040b rw - ext4 /dev/vda rw
";

    #[test]
    fn parses_all_lines() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].target, "/");
        assert_eq!(m[0].fstype, "ext4");
        assert_eq!(m[0].source, "/dev/vda");
        assert_eq!(m[0].options, "ro,relatime,rw,errors=remount-ro");
    }

    #[test]
    fn handles_multiple_optional_fields() {
        let m = parse_line(SAMPLE.lines().nth(2).unwrap()).unwrap();
        assert_eq!(m.target, "/dev");
        assert_eq!(m.fstype, "tmpfs");
        assert_eq!(m.source, "tmpfs");
        assert_eq!(m.options, "rw,nosuid,rw,size=65536k,mode=755");
    }

    #[test]
    fn unescapes_octal_sequences() {
        let m = parse_line(SAMPLE.lines().nth(3).unwrap()).unwrap();
        assert_eq!(m.target, "/mnt/a b");
        assert_eq!(m.root, "/srv/my dir");
        assert_eq!(unescape(r"a\011b\012c\134d"), "a\tb\nc\\d");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape(r"\999"), r"\999");
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("1 2 3 4 5 6 no separator"), None);
        assert_eq!(parse_line("1 2 - ext4 src opts"), None);
    }

    #[test]
    fn tolerates_missing_super_options() {
        let m = parse_line("1 0 0:1 / /x rw - tmpfs none").unwrap();
        assert_eq!(m.options, "rw");
        assert_eq!(m.source, "none");
    }
}
