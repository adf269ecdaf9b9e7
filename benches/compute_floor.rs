//! The compute floor of `coldpress optimize`, for scripts/bench: the work no
//! implementation of the job can skip — decompressing the source's non-base layers
//! and compressing the output layers with the same settings (deterministic
//! parallel gzip, level 6, both cores). Prints JSON with the wall times.
//!
//!   cargo bench --bench compute_floor -- --decompress BLOB... --compress TAR... [--threads N] [--level N] [--single-stream]

use std::fs::File;
use std::io::{self, BufReader};
use std::time::Instant;

use coldpress::writer::pgzip::ParallelGzip;

fn main() {
    let mut decompress = Vec::new();
    let mut compress = Vec::new();
    let mut threads = 2;
    let mut level = 6;
    let mut single = false;
    let mut mode = "";
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--decompress" | "--compress" => mode = if a == "--decompress" { "d" } else { "c" },
            "--threads" => threads = args.next().expect("--threads N").parse().expect("a number"),
            "--level" => level = args.next().expect("--level N").parse().expect("a number"),
            // For comparison: one classic gzip stream per layer, on one core.
            "--single-stream" => single = true,
            "--bench" => {}
            f if mode == "d" => decompress.push(f.to_string()),
            f if mode == "c" => compress.push(f.to_string()),
            other => panic!("unexpected argument {other}"),
        }
    }
    // Decompress the layers as coldpress reads them: up to `threads` at once.
    let t = Instant::now();
    let mut uncompressed = 0u64;
    for batch in decompress.chunks(threads) {
        let sizes: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = batch
                .iter()
                .map(|f| {
                    s.spawn(move || {
                        let r = BufReader::with_capacity(256 << 10, File::open(f).unwrap());
                        let mut d = flate2::bufread::MultiGzDecoder::new(r);
                        io::copy(&mut d, &mut io::sink()).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        uncompressed += sizes.iter().sum::<u64>();
    }
    let decompress_s = t.elapsed().as_secs_f64();
    // Compress the output tars with coldpress's own compressor and settings.
    let t = Instant::now();
    let mut compressed = 0u64;
    let mut input = 0u64;
    for f in &compress {
        let mut r = File::open(f).unwrap();
        if single {
            let mut w = flate2::write::GzEncoder::new(Counter(0), flate2::Compression::new(level));
            input += io::copy(&mut r, &mut w).unwrap();
            compressed += w.finish().unwrap().0;
        } else {
            let mut w = ParallelGzip::new(Counter(0), level, threads);
            input += io::copy(&mut r, &mut w).unwrap();
            compressed += w.finish().unwrap().0;
        }
    }
    let compress_s = t.elapsed().as_secs_f64();
    println!(
        "{{\"decompress_seconds\":{decompress_s:.3},\"decompressed_bytes\":{uncompressed},\"compress_seconds\":{compress_s:.3},\"compress_input_bytes\":{input},\"compressed_bytes\":{compressed},\"floor_seconds\":{:.3}}}",
        decompress_s + compress_s
    );
}

struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
