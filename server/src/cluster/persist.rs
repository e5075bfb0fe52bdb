//! The member table on disk (`<data-dir>/members`), so a restarted node knows the ring before
//! it has talked to anyone and never coordinates a request on a one-node view of a cluster.
//!
//! One member per line: `id address state incarnation heartbeat`. Written to a temporary file,
//! fsynced and renamed, so a crash leaves the old or the new table.

use std::io::Write;
use std::path::Path;

use super::members::{Member, Status};

/// Writes `members` to `path` atomically.
pub fn save(path: &Path, members: &[Member]) -> std::io::Result<()> {
    let mut text = String::new();
    for m in members {
        text.push_str(&format!(
            "{} {} {} {} {}\n",
            m.id,
            m.address,
            m.status.name(),
            m.incarnation,
            m.heartbeat
        ));
    }
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new file: a temporary file,
/// fsynced, renamed into place, the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads the table saved at `path` (empty when there is none).
pub fn load(path: &Path) -> std::io::Result<Vec<Member>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let bad = |line: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: bad member line {line:?}", path.display()),
        )
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            return Err(bad(line));
        }
        let status = match f[2] {
            "joining" => Status::Joining,
            "up" => Status::Up,
            "leaving" => Status::Leaving,
            "left" => Status::Left,
            _ => return Err(bad(line)),
        };
        out.push(Member {
            id: f[0].parse().map_err(|_| bad(line))?,
            address: f[1].to_owned(),
            status,
            incarnation: f[3].parse().map_err(|_| bad(line))?,
            heartbeat: f[4].parse().map_err(|_| bad(line))?,
            conditions: Default::default(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("members");
        assert!(load(&path).unwrap().is_empty());
        let members = vec![
            Member {
                id: 1,
                address: "127.0.0.1:1".into(),
                status: Status::Up,
                incarnation: 3,
                heartbeat: 99,
                conditions: Default::default(),
            },
            Member {
                id: 2,
                address: "127.0.0.1:2".into(),
                status: Status::Left,
                incarnation: 4,
                heartbeat: 1,
                conditions: Default::default(),
            },
        ];
        save(&path, &members).unwrap();
        assert_eq!(load(&path).unwrap(), members);
        std::fs::write(&path, "1 x up\n").unwrap();
        assert!(load(&path).is_err());
    }
}
