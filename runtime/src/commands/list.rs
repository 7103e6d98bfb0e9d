//! `list`: runc's table (tab-aligned, as Go's tabwriter pads it), JSON array, or ids.

use std::path::Path;

use super::{print, CmdError};
use crate::cli::ListFormat;
use crate::state::{list_ids, Container, StateError};

pub fn list(root: &Path, quiet: bool, format: ListFormat) -> Result<(), CmdError> {
    let mut containers = Vec::new();
    for id in list_ids(root)? {
        match Container::load(root, &id) {
            Ok(c) => containers.push(c),
            // Deleted between the directory scan and the load.
            Err(StateError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if quiet {
        let ids: String = containers
            .iter()
            .map(|c| format!("{}\n", c.record.id))
            .collect();
        return print(&ids);
    }
    let rows: Vec<_> = containers.iter().map(|c| c.report(c.status())).collect();
    if format == ListFormat::Json {
        let json = if rows.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&rows).expect("serialises")
        };
        return print(&(json + "\n"));
    }
    let mut table = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    for r in &rows {
        table.push([
            r.id.to_string(),
            r.pid.to_string(),
            r.status.to_string(),
            r.bundle.display().to_string(),
            r.created.to_string(),
            r.owner.to_string(),
        ]);
    }
    print(&tabulate(&table))
}

/// Left-aligned columns separated by at least three spaces, like runc's tabwriter
/// (minwidth 12, padding 3).
fn tabulate(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len() + 3).max(12);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i == row.len() - 1 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}", width = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_like_tabwriter() {
        let rows = [
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from),
            ["c1", "42", "running", "/b", "t", "root"].map(String::from),
        ];
        let t = tabulate(&rows);
        assert!(
            t.starts_with("ID          PID         STATUS      BUNDLE      CREATED     OWNER\n")
        );
        assert!(t.contains("c1          42          running"));
    }
}
