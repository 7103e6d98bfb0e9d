//! passwd(5) lookups by uid, read as runc reads them (libcontainer/user): the file
//! itself, never NSS. Inside a container NSS would load the image's modules into the
//! runtime; on the host the owner's name is cosmetic and a static hull has no NSS.

/// Field `n` (0-based: 0 name, 5 home) of the first entry for `uid` in `text`.
pub fn field(text: &str, uid: u32, n: usize) -> Option<&str> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2].parse() == Ok(uid))
        .and_then(|f| f.get(n).copied())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_first_entry_of_a_uid() {
        let text = "root:x:0:0:root:/root:/bin/sh\nbad line\nw:x:33:33::/var/www:/bin/sh\nx:x:33:1::/x:/bin/sh\n";
        assert_eq!(super::field(text, 0, 0), Some("root"));
        assert_eq!(super::field(text, 33, 5), Some("/var/www"));
        assert_eq!(super::field(text, 7, 0), None);
    }
}
