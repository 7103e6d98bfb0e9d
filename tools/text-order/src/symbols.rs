//! The traced binary's functions, read from `nm --defined-only --print-size` output.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum SymbolsError {
    #[error("symbol table line {line}: {what}: {text:?}")]
    Line {
        line: usize,
        what: &'static str,
        text: String,
    },
    #[error("symbol table lists no sized functions")]
    Empty,
}

/// Function entry addresses (relative to the load base) and one name for each. Aliases
/// share an address; any of their names orders the same input section.
#[derive(Debug, Default)]
pub struct Symbols {
    by_addr: HashMap<u64, String>,
}

impl Symbols {
    pub fn parse(text: &str) -> Result<Self, SymbolsError> {
        let mut by_addr = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let bad = |what| SymbolsError::Line {
                line: i + 1,
                what,
                text: raw.to_string(),
            };
            let fields: Vec<&str> = raw.split_whitespace().collect();
            // Lines without a size (3 fields) are labels and absolute symbols, not functions.
            let [addr, size, kind, name] = fields[..] else {
                continue;
            };
            if !matches!(kind, "t" | "T" | "W" | "w") {
                continue;
            }
            let addr = u64::from_str_radix(addr, 16).map_err(|_| bad("address is not hex"))?;
            let size = u64::from_str_radix(size, 16).map_err(|_| bad("size is not hex"))?;
            if size > 0 {
                by_addr.entry(addr).or_insert_with(|| name.to_string());
            }
        }
        if by_addr.is_empty() {
            return Err(SymbolsError::Empty);
        }
        Ok(Symbols { by_addr })
    }

    pub fn name(&self, addr: u64) -> Option<&str> {
        self.by_addr.get(&addr).map(String::as_str)
    }

    pub fn addrs(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_addr.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sized_text_symbols_only() {
        let nm = "\
0000000000001000 0000000000000010 T main
0000000000001000 0000000000000010 T main_alias
0000000000002000 0000000000000000 t empty
0000000000003000 0000000000000008 D data
0000000000004000 0000000000000020 W weak_fn
0000000000005000 T no_size
";
        let s = Symbols::parse(nm).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.name(0x1000), Some("main"));
        assert_eq!(s.name(0x4000), Some("weak_fn"));
        assert_eq!(s.name(0x2000), None);
    }

    #[test]
    fn names_the_bad_line() {
        let err = Symbols::parse("zz 10 T f\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("not hex"), "{err}");
        assert!(matches!(
            Symbols::parse("").unwrap_err(),
            SymbolsError::Empty
        ));
    }
}
