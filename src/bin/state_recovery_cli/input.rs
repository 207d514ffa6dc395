//! Bounded reading of stdin: nothing the user pipes in is held in memory beyond a cap.

use std::io::{self, BufRead, Read};

/// Reads all of `reader` if it holds at most `cap` bytes; `Ok(None)` if it holds more (having
/// read only `cap + 1` bytes of it).
pub(crate) fn read_capped(reader: impl Read, cap: usize) -> io::Result<Option<Vec<u8>>> {
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut buf = Vec::new();
    reader.take(limit).read_to_end(&mut buf)?;
    Ok((buf.len() <= cap).then_some(buf))
}

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// The line without its `\n` and one trailing `\r`.
    Text(&'a [u8]),
    /// A line longer than the cap; it was skipped, not stored.
    TooLong,
}

impl Line<'_> {
    /// Empty or only whitespace.
    pub(crate) fn is_blank(&self) -> bool {
        matches!(self, Line::Text(t) if t.iter().all(u8::is_ascii_whitespace))
    }
}

/// Splits a reader into lines of at most `cap` bytes each (not counting `\r\n` or `\n`).
pub(crate) struct Lines<R> {
    reader: R,
    cap: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub(crate) fn new(reader: R, cap: usize) -> Self {
        Self {
            reader,
            cap,
            buf: Vec::new(),
        }
    }

    /// The next line, or `None` at the end of the input. A line over the cap is consumed up to
    /// its newline in buffer-sized pieces and reported as [`Line::TooLong`].
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        // Room for a trailing '\r' on a line of exactly `cap` bytes.
        let room_for = self.cap.saturating_add(1);
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let (chunk, used) = match newline.and_then(|i| available.split_at_checked(i)) {
                Some((chunk, _)) => (chunk, chunk.len().saturating_add(1)),
                None => (available, available.len()),
            };
            if !too_long {
                if chunk.len() > room_for.saturating_sub(self.buf.len()) {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.reader.consume(used);
            if newline.is_some() {
                break;
            }
        }
        if too_long {
            return Ok(Some(Line::TooLong));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.buf.len() > self.cap {
            return Ok(Some(Line::TooLong));
        }
        Ok(Some(Line::Text(&self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], cap: usize) -> Vec<Option<Vec<u8>>> {
        // A tiny buffer, so that lines span many fills.
        let mut l = Lines::new(io::BufReader::with_capacity(3, input), cap);
        let mut out = Vec::new();
        while let Some(line) = l.next_line().unwrap() {
            out.push(match line {
                Line::Text(t) => Some(t.to_vec()),
                Line::TooLong => None,
            });
        }
        out
    }

    #[test]
    fn splits_strips_cr_and_caps() {
        let got = lines(b"abc\r\n\nabcdef\nxy\r\nabcd\r\nlast", 4);
        let want: Vec<Option<Vec<u8>>> = vec![
            Some(b"abc".to_vec()),
            Some(vec![]),
            None,
            Some(b"xy".to_vec()),
            Some(b"abcd".to_vec()),
            Some(b"last".to_vec()),
        ];
        assert_eq!(got, want);
        assert_eq!(lines(b"", 4), Vec::<Option<Vec<u8>>>::new());
        assert_eq!(lines(b"abcde", 4), vec![None]);
        assert_eq!(lines(b"abcd\r\r\n", 4), vec![None]);
    }

    #[test]
    fn blank_lines() {
        assert!(Line::Text(b" \t").is_blank());
        assert!(!Line::Text(b" a").is_blank());
        assert!(!Line::TooLong.is_blank());
    }

    #[test]
    fn capped_read() {
        assert_eq!(
            read_capped(&b"abcd"[..], 4).unwrap(),
            Some(b"abcd".to_vec())
        );
        assert_eq!(read_capped(&b"abcde"[..], 4).unwrap(), None);
    }
}
