//! Runs fuzz targets on files, without libFuzzer: `replay TARGET PATH...` (files, or
//! directories of them such as `corpus/TARGET`), for reproducing a crash where the
//! fuzzer cannot be built, and for the seed corpus in CI.

use std::path::Path;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((name, paths)) = args.split_first() else {
        eprintln!("usage: replay TARGET PATH...");
        return std::process::ExitCode::from(2);
    };
    let Some(&(_, target)) = fleet_fuzz::TARGETS.iter().find(|(n, _)| n == name) else {
        eprintln!("unknown target `{name}`");
        return std::process::ExitCode::from(2);
    };
    let mut n = 0;
    for p in paths {
        let p = Path::new(p);
        let files: Vec<_> = if p.is_dir() {
            let mut v: Vec<_> = std::fs::read_dir(p)
                .expect("read dir")
                .map(|e| e.expect("dir entry").path())
                .collect();
            v.sort();
            v
        } else {
            vec![p.to_owned()]
        };
        for f in files {
            target(&std::fs::read(&f).expect("read input"));
            n += 1;
        }
    }
    eprintln!("{name}: {n} inputs, no panic");
    std::process::ExitCode::SUCCESS
}
