//! `group_vars/` and `host_vars/` beside an inventory file, as Ansible's `host_group_vars`
//! plugin reads them: for a group or host NAME, the first of `NAME`, `NAME.yml`,
//! `NAME.yaml` and `NAME.json` that exists; when that is a directory, its files in sorted
//! order (subdirectories without an extension too, hidden files and `~` backups skipped,
//! only files with one of those extensions or none), a later file overriding an earlier one.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::Layer;
use super::yaml::parse_vars_file;
use crate::error::InventoryError;

/// Largest vars file read; a bigger one is refused when a group or host needs it.
const MAX_FILE: u64 = 16 << 20;
/// Deepest directory nesting followed (symlinks may loop).
const MAX_DEPTH: usize = 16;

/// The `group_vars/` and `host_vars/` directories beside an Ansible inventory, read into
/// memory. Only the files of the inventory's groups and hosts are parsed, as in Ansible, so
/// a stray file there is never an error.
#[derive(Debug, Clone, Default)]
pub struct VarsDirs {
    group_vars: Option<Dir>,
    host_vars: Option<Dir>,
}

#[derive(Debug, Clone)]
struct Dir {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
enum Entry {
    File(PathBuf, Result<String, (io::ErrorKind, String)>),
    Dir(Dir),
}

impl VarsDirs {
    /// Reads `group_vars/` and `host_vars/` in the directory of `inventory`, those that
    /// exist; none is not an error.
    ///
    /// # Errors
    ///
    /// [`InventoryError::Read`] when one of the two directories exists but cannot be
    /// listed. A file that cannot be read is an error only when a group or host needs it.
    pub fn read(inventory: &Path) -> Result<VarsDirs, InventoryError> {
        let base = inventory
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let read = |name: &str| -> Result<Option<Dir>, InventoryError> {
            let path = base.join(name);
            if !path.is_dir() {
                return Ok(None);
            }
            read_dir(&path, true, 0)
                .map(Some)
                .map_err(|source| InventoryError::Read { path, source })
        };
        Ok(VarsDirs {
            group_vars: read("group_vars")?,
            host_vars: read("host_vars")?,
        })
    }

    /// Whether neither directory exists.
    pub fn is_empty(&self) -> bool {
        self.group_vars.is_none() && self.host_vars.is_none()
    }

    /// The variables `group_vars/` gives group `name`, and the files they came from.
    pub(crate) fn group(&self, name: &str) -> Result<(Layer, Vec<PathBuf>), InventoryError> {
        lookup(self.group_vars.as_ref(), name)
    }

    /// The variables `host_vars/` gives host `name`, and the files they came from.
    pub(crate) fn host(&self, name: &str) -> Result<(Layer, Vec<PathBuf>), InventoryError> {
        lookup(self.host_vars.as_ref(), name)
    }
}

/// Lists `path`. At the top every entry is kept (a host name may hold dots, so
/// `web01.example.com` is a file without a vars extension); below it Ansible's filter
/// applies.
fn read_dir(path: &Path, top: bool, depth: usize) -> io::Result<Dir> {
    let mut entries = BTreeMap::new();
    for e in std::fs::read_dir(path)? {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let full = e.path();
        // `metadata` follows symlinks, as Ansible's `os.path.isdir` does.
        let Ok(meta) = std::fs::metadata(&full) else {
            continue;
        };
        let ext = Path::new(&name).extension().and_then(|x| x.to_str());
        if meta.is_dir() {
            if (top || ext.is_none()) && depth < MAX_DEPTH {
                entries.insert(name, Entry::Dir(read_dir(&full, false, depth + 1)?));
            }
        } else if meta.is_file() && (top || matches!(ext, None | Some("yml" | "yaml" | "json"))) {
            let text = if meta.len() > MAX_FILE {
                Err((io::ErrorKind::InvalidData, "larger than 16 MiB".to_owned()))
            } else {
                std::fs::read_to_string(&full).map_err(|e| (e.kind(), e.to_string()))
            };
            entries.insert(name, Entry::File(full, text));
        }
    }
    Ok(Dir { entries })
}

fn lookup(dir: Option<&Dir>, name: &str) -> Result<(Layer, Vec<PathBuf>), InventoryError> {
    let mut layer = Layer::default();
    let mut used = Vec::new();
    let Some(dir) = dir else {
        return Ok((layer, used));
    };
    let found = ["", ".yml", ".yaml", ".json"]
        .iter()
        .find_map(|ext| dir.entries.get(&format!("{name}{ext}")));
    let mut files = Vec::new();
    match found {
        None => {}
        Some(Entry::File(p, t)) => files.push((p, t)),
        Some(Entry::Dir(d)) => collect(d, &mut files),
    }
    for (path, text) in files {
        let text = text.as_ref().map_err(|(kind, why)| InventoryError::Read {
            path: path.clone(),
            source: io::Error::new(*kind, why.clone()),
        })?;
        let file: Arc<Path> = Arc::from(path.as_path());
        layer.overlay(&parse_vars_file(&file, text)?);
        used.push(path.clone());
    }
    Ok((layer, used))
}

type FileText = Result<String, (io::ErrorKind, String)>;

fn collect<'a>(d: &'a Dir, out: &mut Vec<(&'a PathBuf, &'a FileText)>) {
    for e in d.entries.values() {
        match e {
            Entry::File(p, t) => out.push((p, t)),
            Entry::Dir(sub) => collect(sub, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ansible::model::Val;

    #[test]
    fn files_and_directories_as_ansible_finds_them() {
        let tmp = tempfile::tempdir().unwrap();
        let gv = tmp.path().join("group_vars");
        std::fs::create_dir_all(gv.join("web/sub")).unwrap();
        std::fs::write(gv.join("all.yml"), "a: 1\n").unwrap();
        // `all` (no extension) comes first and wins the lookup: `all.yml` is not read.
        std::fs::write(gv.join("all"), "a: 0\n").unwrap();
        std::fs::write(gv.join("web/10.yml"), "x: first\ny: 1\n").unwrap();
        std::fs::write(gv.join("web/20.yaml"), "x: second\n").unwrap();
        std::fs::write(gv.join("web/sub/30.json"), "{\"z\": [1, 2]}\n").unwrap();
        std::fs::write(gv.join("web/.hidden.yml"), "x: hidden\n").unwrap();
        std::fs::write(gv.join("web/40.yml~"), "x: backup\n").unwrap();
        std::fs::write(gv.join("web/notes.txt"), "not: read\n").unwrap();
        std::fs::write(gv.join("stray.yml"), "{{{ not yaml\n").unwrap();
        let hv = tmp.path().join("host_vars");
        std::fs::create_dir_all(&hv).unwrap();
        std::fs::write(hv.join("web01.example.com"), "h: 1\n").unwrap();

        let dirs = VarsDirs::read(&tmp.path().join("hosts.ini")).unwrap();
        let (all, used) = dirs.group("all").unwrap();
        assert_eq!(all.get("a").unwrap().val, Val::Int(0));
        assert_eq!(used, [gv.join("all")]);
        let (web, used) = dirs.group("web").unwrap();
        assert_eq!(web.get("x").unwrap().val, Val::Str("second".into()));
        assert_eq!(web.get("y").unwrap().val, Val::Int(1));
        assert_eq!(
            web.get("z").unwrap().val,
            Val::List(vec![Val::Int(1), Val::Int(2)])
        );
        assert_eq!(used.len(), 3);
        let x = web.get("x").unwrap();
        assert_eq!(
            (x.at.file.as_ref(), x.at.line),
            (gv.join("web/20.yaml").as_path(), 1)
        );
        assert_eq!(
            dirs.host("web01.example.com")
                .unwrap()
                .0
                .get("h")
                .unwrap()
                .val,
            Val::Int(1)
        );
        assert!(dirs.group("db").unwrap().0.is_empty());
        // The stray file is only an error when something needs it.
        let e = dirs.group("stray").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:2:1: invalid YAML",
                gv.join("stray.yml").display()
            )),
            "{e}"
        );

        let none = VarsDirs::read(&tmp.path().join("sub/hosts.ini")).unwrap();
        assert!(none.is_empty());
    }
}
