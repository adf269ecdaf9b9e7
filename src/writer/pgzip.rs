//! Deterministic parallel gzip. The input is cut into fixed 1 MiB chunks; each is
//! deflated on its own (sync-flushed, so chunks end on a byte boundary) and the
//! results are concatenated into one gzip member with the combined CRC-32. The
//! output depends only on the input and the level, never on the number of threads
//! (unlike pigz-style compressors that share dictionaries across blocks, see
//! docs/decisions.md), so layer digests stay reproducible while both cores work.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

pub const CHUNK: usize = 1 << 20;

/// gzip header: no name, mtime 0, OS "unknown" — nothing that varies between runs.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

type Job = JoinHandle<io::Result<(Vec<u8>, Crc)>>;

fn deflate(data: &[u8], level: u32, last: bool) -> io::Result<(Vec<u8>, Crc)> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete when all input is in and there was room to spare.
            _ if !last && done_input && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    let mut crc = Crc::new();
    crc.update(data);
    Ok((out, crc))
}

pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    threads: usize,
    buf: Vec<u8>,
    pending: VecDeque<Job>,
    crc: Crc,
    started: bool,
}

impl<W: Write> ParallelGzip<W> {
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        ParallelGzip {
            inner,
            level: level.min(9),
            threads: threads.max(1),
            buf: Vec::with_capacity(CHUNK),
            pending: VecDeque::new(),
            crc: Crc::new(),
            started: false,
        }
    }

    fn emit(&mut self, compressed: &[u8], crc: &Crc) -> io::Result<()> {
        if !self.started {
            self.inner.write_all(&HEADER)?;
            self.started = true;
        }
        self.inner.write_all(compressed)?;
        self.crc.combine(crc);
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        if let Some(job) = self.pending.pop_front() {
            let (c, crc) = job
                .join()
                .map_err(|_| io::Error::other("a compression thread panicked"))??;
            self.emit(&c, &crc)?;
        }
        Ok(())
    }

    fn submit(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        if self.threads == 1 {
            let (c, crc) = deflate(&chunk, self.level, false)?;
            return self.emit(&c, &crc);
        }
        while self.pending.len() >= self.threads {
            self.collect_one()?;
        }
        let level = self.level;
        self.pending
            .push_back(std::thread::spawn(move || deflate(&chunk, level, false)));
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        while !self.pending.is_empty() {
            self.collect_one()?;
        }
        let last = std::mem::take(&mut self.buf);
        let (c, crc) = deflate(&last, self.level, true)?;
        self.emit(&c, &crc)?;
        let (sum, amount) = (self.crc.sum(), self.crc.amount());
        self.inner.write_all(&sum.to_le_bytes())?;
        self.inner.write_all(&amount.to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gz(data: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6, threads);
        for piece in data.chunks(70_001) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut x: u64 = 7;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"the quick brown fox \n"[(x % 21) as usize]
            })
            .collect()
    }

    #[test]
    fn round_trips_and_is_thread_count_independent() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 12_345] {
            let data = sample(n);
            let one = gz(&data, 1);
            assert_eq!(gz(&data, 2), one, "{n} bytes, 2 threads");
            assert_eq!(gz(&data, 4), one, "{n} bytes, 4 threads");
            // A plain single-member decoder reads it all: one gzip member.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{n} bytes");
        }
    }
}
