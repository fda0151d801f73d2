//! Immutable artifacts addressed by sha256 digest.
//!
//! A file is stored as-is. A directory is packed into a deterministic tar
//! (POSIX ustar, PAX records only for paths/links over 100 bytes or files of
//! 8 GiB and more): entries in sorted pre-order, mtime 0, uid/gid 0, no user
//! or group names, mode 0755 for directories and executables, 0644 for other
//! files, 0777 for symlinks. The same tree therefore always has the same
//! digest, whoever packs it and whenever. Written by hand (~100 lines) rather
//! than pulling the `tar` crate, whose determinism would need the same
//! normalisation anyway.
//!
//! Blobs live at `blobs/sha256/<hex>`, are written once (a blob that already
//! exists is never rewritten) and read back only after verifying the digest.

use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::{Node, hash_reader, hex, is_hex_digest, node_of, walk};
use crate::exec::unique_temp_path;

/// Media type of an artifact stored from a single file.
pub const MEDIA_TYPE_FILE: &str = "application/octet-stream";
/// Media type of an artifact packed from a directory.
pub const MEDIA_TYPE_TAR: &str = "application/x-tar";

/// A stored artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The name given in the pipeline (`artifacts: [{ name }]`).
    pub name: String,
    /// `sha256:<hex>` of the stored bytes.
    pub digest: String,
    /// Size in bytes of the stored blob.
    pub size: u64,
    /// [`MEDIA_TYPE_FILE`] or [`MEDIA_TYPE_TAR`].
    pub media_type: String,
}

/// Errors of the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The artifact name is empty or contains `/`, `\` or control characters.
    #[error("invalid artifact name {0:?}")]
    InvalidName(String),
    /// The digest is not `sha256:<64 hex>`.
    #[error("invalid digest {0:?} (expected sha256:<64 hex chars>)")]
    InvalidDigest(String),
    /// No blob with this digest.
    #[error("artifact {0} not found")]
    NotFound(String),
    /// The stored bytes do not match their digest.
    #[error("artifact {digest} is corrupt: content hashes to sha256:{actual}")]
    Corrupt {
        /// The requested digest.
        digest: String,
        /// What the stored bytes hash to.
        actual: String,
    },
    /// A path to pack is neither a file, a directory nor a symlink.
    #[error("cannot pack {0}: not a regular file, directory or symlink")]
    Unsupported(PathBuf),
    /// A file changed size while being packed.
    #[error("{0} changed while being packed")]
    Changed(PathBuf),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArtifactError + use<> {
    let path = path.to_path_buf();
    move |source| ArtifactError::Io { op, path, source }
}

/// A content-addressed, write-once artifact store on disk.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// Parses `sha256:<hex>` (or bare hex) into the hex part.
pub fn parse_digest(digest: &str) -> Result<&str, ArtifactError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if is_hex_digest(hex) {
        Ok(hex)
    } else {
        Err(ArtifactError::InvalidDigest(digest.to_string()))
    }
}

impl ArtifactStore {
    /// Opens (creating if needed) a store rooted at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let root = dir.into();
        for sub in ["blobs/sha256", "tmp"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        Ok(ArtifactStore { root })
    }

    /// Where the blob for `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ArtifactError> {
        Ok(self.root.join("blobs/sha256").join(parse_digest(digest)?))
    }

    /// Whether a blob with this digest is stored.
    pub fn contains(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// Stores a file as-is, or a directory as a deterministic tar.
    pub fn put_path(&self, name: &str, path: &Path) -> Result<Artifact, ArtifactError> {
        if name.is_empty()
            || name.len() > 255
            || name
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control())
        {
            return Err(ArtifactError::InvalidName(name.to_string()));
        }
        let meta = fs::metadata(path).map_err(io_err("read", path))?;
        let tmp = self
            .root
            .join("tmp")
            .join(unique_temp_path("a").file_name().unwrap_or_default());
        let result = (|| {
            let file = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
            let mut w = HashingWriter {
                inner: io::BufWriter::new(file),
                hasher: Sha256::new(),
                written: 0,
            };
            let media_type = if meta.is_dir() {
                write_tar(path, &mut w)?;
                MEDIA_TYPE_TAR
            } else if meta.is_file() {
                let f = fs::File::open(path).map_err(io_err("read", path))?;
                io::copy(&mut f.take(meta.len()), &mut w).map_err(io_err("copy", path))?;
                if w.written != meta.len() {
                    return Err(ArtifactError::Changed(path.to_path_buf()));
                }
                MEDIA_TYPE_FILE
            } else {
                return Err(ArtifactError::Unsupported(path.to_path_buf()));
            };
            w.inner.flush().map_err(io_err("write", &tmp))?;
            let digest = hex(&w.hasher.finalize());
            Ok((digest, w.written, media_type))
        })();
        let (digest, size, media_type) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let dest = self.root.join("blobs/sha256").join(&digest);
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444));
        // hard_link fails if the blob exists: it is never overwritten.
        match fs::hard_link(&tmp, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err("store", &dest)(e));
            }
        }
        let _ = fs::remove_file(&tmp);
        Ok(Artifact {
            name: name.to_string(),
            digest: format!("sha256:{digest}"),
            size,
            media_type: media_type.to_string(),
        })
    }

    /// Opens a blob after verifying its content against `digest`.
    pub fn open_blob(&self, digest: &str) -> Result<fs::File, ArtifactError> {
        let path = self.blob_path(digest)?;
        let want = parse_digest(digest)?;
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound(format!("sha256:{want}")));
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let (actual, _) = hash_reader(&mut f).map_err(io_err("read", &path))?;
        if actual != want {
            return Err(ArtifactError::Corrupt {
                digest: format!("sha256:{want}"),
                actual,
            });
        }
        f.rewind().map_err(io_err("read", &path))?;
        Ok(f)
    }

    /// Reads a whole blob into memory, verified.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ArtifactError> {
        let mut f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| io_err("read", Path::new(digest))(e))?;
        // Re-check what was actually returned (guards against a concurrent edit).
        let actual = hex(&Sha256::digest(&buf));
        if actual != parse_digest(digest)? {
            return Err(ArtifactError::Corrupt {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(buf)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

const BLOCK: usize = 512;
const MAX_OCTAL_SIZE: u64 = 0o77777777777;

fn octal(field: &mut [u8], value: u64) {
    // width-1 octal digits, then NUL.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let bytes = s.as_bytes();
    let bytes = &bytes[bytes.len().saturating_sub(digits)..];
    field[..digits].copy_from_slice(bytes);
    field[digits] = 0;
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n" where len counts the whole record, itself included.
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut rec = format!("{len} {key}=").into_bytes();
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

fn header(name: &[u8], mode: u32, size: u64, typeflag: u8, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size.min(MAX_OCTAL_SIZE));
    octal(&mut h[136..148], 0);
    h[156] = typeflag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    h
}

fn write_entry(
    w: &mut impl Write,
    name: &[u8],
    mode: u32,
    size: u64,
    typeflag: u8,
    link: &[u8],
) -> io::Result<()> {
    let mut pax = Vec::new();
    if name.len() > 100 {
        pax.extend(pax_record("path", name));
    }
    if link.len() > 100 {
        pax.extend(pax_record("linkpath", link));
    }
    if size > MAX_OCTAL_SIZE {
        pax.extend(pax_record("size", size.to_string().as_bytes()));
    }
    if !pax.is_empty() {
        let mut pax_name = b"PaxHeader/".to_vec();
        pax_name.extend_from_slice(&name[..name.len().min(90)]);
        w.write_all(&header(&pax_name, 0o644, pax.len() as u64, b'x', b""))?;
        w.write_all(&pax)?;
        pad(w, pax.len() as u64)?;
    }
    w.write_all(&header(name, mode, size, typeflag, link))
}

fn pad(w: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// Writes a deterministic tar of `dir`'s contents (paths relative to `dir`).
fn write_tar(dir: &Path, w: &mut impl Write) -> Result<(), ArtifactError> {
    let wr = |e| io_err("write", dir)(e);
    for (rel, _) in walk(dir).map_err(io_err("read", dir))? {
        let full = dir.join(&rel);
        let mut name = rel.as_os_str().as_bytes().to_vec();
        // Re-read the node: the walk's view may be stale for the size.
        match node_of(&full).map_err(io_err("read", &full))? {
            Node::Dir => {
                name.push(b'/');
                write_entry(w, &name, 0o755, 0, b'5', b"").map_err(wr)?;
            }
            Node::Symlink(target) => {
                write_entry(w, &name, 0o777, 0, b'2', target.as_os_str().as_bytes()).map_err(wr)?;
            }
            Node::File { mode, size } => {
                let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                write_entry(w, &name, mode, size, b'0', b"").map_err(wr)?;
                let f = fs::File::open(&full).map_err(io_err("read", &full))?;
                let copied = io::copy(&mut f.take(size), w).map_err(io_err("read", &full))?;
                if copied != size {
                    return Err(ArtifactError::Changed(full));
                }
                pad(w, size).map_err(wr)?;
            }
            Node::Other => return Err(ArtifactError::Unsupported(full)),
        }
    }
    w.write_all(&[0u8; BLOCK * 2]).map_err(wr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [1usize, 5, 90, 95, 96, 200, 995, 1000] {
            let v = vec![b'a'; n];
            let rec = pax_record("path", &v);
            let (len, _) = std::str::from_utf8(&rec).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), rec.len(), "n={n}");
        }
    }

    #[test]
    fn header_checksum_is_valid() {
        let h = header(b"a.txt", 0o644, 5, b'0', b"");
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|b| u32::from(*b)).sum::<u32>());
    }
}
