//! blkio weight on cgroup v2, written by hull rather than libcgroups: 0.7
//! converts it in u16 arithmetic, which overflows for any weight above 16
//! (a panic in debug builds, a wrong io.weight in release ones).

use std::path::Path;

use super::CgroupError;

/// `linux.resources.blockIO.weight` (v1's scale, 10..=1000) on the v2 scale of
/// io.weight (1..=10000): runc's linear map `1 + (w - 10) * 9999 / 990`
/// (libcontainer/cgroups/utils.go, ConvertBlkIOToIOWeightValue).
pub fn io_weight(blkio: u16) -> Result<u64, CgroupError> {
    if !(10..=1000).contains(&blkio) {
        return Err(CgroupError::BlkioWeight { weight: blkio });
    }
    Ok(1 + (u64::from(blkio) - 10) * 9999 / 990)
}

/// Writes `blkio` weight to cgroup `dir` as runc 1.1 does (fs2/io.go): as is to
/// io.bfq.weight when the BFQ scheduler provides it (same scale), else
/// converted to io.weight.
pub fn write_weight(dir: &Path, blkio: u16) -> Result<(), CgroupError> {
    let weight = io_weight(blkio)?;
    let bfq = dir.join("io.bfq.weight");
    let (path, value) = if bfq.exists() {
        (bfq, u64::from(blkio))
    } else {
        (dir.join("io.weight"), weight)
    };
    std::fs::write(&path, value.to_string()).map_err(|source| CgroupError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_convert_like_runc() {
        assert_eq!(io_weight(10).unwrap(), 1);
        assert_eq!(io_weight(17).unwrap(), 71);
        assert_eq!(io_weight(500).unwrap(), 4950);
        assert_eq!(io_weight(1000).unwrap(), 10000);
        for bad in [1, 9, 1001, u16::MAX] {
            assert!(io_weight(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bfq_weight_is_written_unconverted() {
        let dir = tempfile::tempdir().unwrap();
        write_weight(dir.path(), 500).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("io.weight")).unwrap(),
            "4950"
        );
        std::fs::write(dir.path().join("io.bfq.weight"), "").unwrap();
        write_weight(dir.path(), 500).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("io.bfq.weight")).unwrap(),
            "500"
        );
    }
}
