//! Writes a synthetic function image of a chosen size for scripts/bench's memory
//! runs: the built-in example base plus a dependency layer of FILES files totalling
//! SIZE MiB and a small code layer, so size and file count can be varied apart.
//!
//!   cargo bench --bench make_image -- LAYOUT TAG SIZE_MIB FILES

use coldpress::example::{ImageSpec, Item, base_layers, write_layer};
use coldpress::image::Compression;
use coldpress::transport::oci_layout::OciLayoutSink;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [layout, tag, size_mib, files] = args.as_slice() else {
        panic!("usage: make_image LAYOUT TAG SIZE_MIB FILES");
    };
    let size: u64 = size_mib.parse::<u64>().expect("SIZE_MIB") << 20;
    let files: u64 = files.parse().expect("FILES");
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = ImageSpec::lambda(&["handler.handler"]);
    for (l, by) in base_layers(tmp.path()).unwrap() {
        spec.add(l, by);
    }
    let dirs: Vec<String> = (0..files.div_ceil(100))
        .map(|d| format!("var/task/pkg/m{d}"))
        .collect();
    let names: Vec<String> = (0..files)
        .map(|i| format!("{}/f{i}.py", dirs[(i / 100) as usize]))
        .collect();
    let mut items = vec![
        Item::Dir("var"),
        Item::Dir("var/task"),
        Item::Dir("var/task/pkg"),
    ];
    items.extend(dirs.iter().map(|d| Item::Dir(d)));
    items.extend(names.iter().map(|n| Item::Blob(n, size / files)));
    items.push(Item::Dir("var/task/pkg/tests"));
    items.push(Item::Blob("var/task/pkg/tests/test_big.py", size / 20));
    spec.add(
        write_layer(tmp.path(), &items, Compression::Gzip).unwrap(),
        "RUN pip install -t /var/task",
    );
    spec.add(
        write_layer(
            tmp.path(),
            &[
                Item::Dir("var"),
                Item::Dir("var/task"),
                Item::Text("var/task/handler.py", "def handler(e, c):\n    return 1\n"),
            ],
            Compression::Gzip,
        )
        .unwrap(),
        "COPY handler.py /var/task",
    );
    let m = spec
        .write(&OciLayoutSink::create(std::path::Path::new(layout), Some(tag)).unwrap())
        .unwrap();
    println!("{}", m.digest);
}
