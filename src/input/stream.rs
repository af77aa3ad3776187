//! The bytes under the CSV: a UTF-8 byte-order mark is dropped, UTF-16 is
//! decoded to UTF-8 as it streams, and one record may not swallow the file.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use encoding_rs_io::DecodeReaderBytesBuilder;

/// The most bytes one record may take. A quoted field that never closes
/// would otherwise pull the rest of a huge file into memory.
pub const RECORD_LIMIT: usize = 4 << 20;

/// A readable stream of text that should be UTF-8.
pub type Text = Box<dyn Read + Send>;

/// What the input was written in, as told by its byte-order mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf8Bom,
    Utf16Le,
    Utf16Be,
}

impl Encoding {
    fn sniff(start: &[u8]) -> Encoding {
        match start {
            [0xEF, 0xBB, 0xBF, ..] => Encoding::Utf8Bom,
            [0xFF, 0xFE, ..] => Encoding::Utf16Le,
            [0xFE, 0xFF, ..] => Encoding::Utf16Be,
            _ => Encoding::Utf8,
        }
    }

    fn bom_len(self) -> usize {
        match self {
            Encoding::Utf8 => 0,
            Encoding::Utf8Bom => 3,
            Encoding::Utf16Le | Encoding::Utf16Be => 2,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8Bom => "UTF-8 with a byte-order mark",
            Encoding::Utf16Le => "UTF-16LE (Excel \"Unicode text\"), decoded",
            Encoding::Utf16Be => "UTF-16BE, decoded",
        })
    }
}

/// Open `raw` as text. UTF-8 passes through untouched, invalid bytes
/// included, so that each bad row can be refused with its own line.
pub fn decode<R: Read + Send + 'static>(raw: R) -> io::Result<(Text, Encoding)> {
    let mut reader = BufReader::with_capacity(64 << 10, raw);
    let encoding = Encoding::sniff(reader.fill_buf()?);
    reader.consume(encoding.bom_len());

    let utf16 = match encoding {
        Encoding::Utf8 | Encoding::Utf8Bom => return Ok((Box::new(reader), encoding)),
        Encoding::Utf16Le => encoding_rs::UTF_16LE,
        Encoding::Utf16Be => encoding_rs::UTF_16BE,
    };
    // Invalid UTF-16 comes out as U+FFFD, which the row checks refuse.
    let decoded = DecodeReaderBytesBuilder::new()
        .encoding(Some(utf16))
        .build(reader);
    Ok((Box::new(decoded), encoding))
}

/// Watches the text on its way to the CSV reader, whose own line numbers
/// go wrong after CRLF line ends and blank lines: where the newlines are,
/// and how many bytes the current record has taken.
pub struct Tracked<R> {
    inner: R,
    ledger: Arc<Mutex<Ledger>>,
}

/// The reading side's handle on what a `Tracked` reader has seen.
#[derive(Clone)]
pub struct Tracker(Arc<Mutex<Ledger>>);

#[derive(Default)]
struct Ledger {
    /// Bytes read so far.
    offset: u64,
    /// Newlines before the ones still in `ahead`.
    counted: u64,
    /// Offsets of newlines read but not yet asked about: no more than the
    /// CSV reader's buffer plus the record being read.
    ahead: VecDeque<u64>,
    since_record: usize,
    /// Quote characters read so far: an odd count at the end of the file
    /// means a quoted field was never closed.
    quotes: u64,
    /// The text has ended: a read returned nothing.
    ended: bool,
}

impl<R> Tracked<R> {
    pub fn new(inner: R) -> (Tracked<R>, Tracker) {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let tracker = Tracker(ledger.clone());
        (Tracked { inner, ledger }, tracker)
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ledger.lock().expect("never poisoned").since_record > RECORD_LIMIT {
            return Err(io::Error::other("one record is larger than the limit"));
        }
        let read = self.inner.read(buf)?;
        let mut ledger = self.ledger.lock().expect("never poisoned");
        let start = ledger.offset;
        let newlines = buf[..read].iter().enumerate().filter(|(_, &b)| b == b'\n');
        ledger.ahead.extend(newlines.map(|(i, _)| start + i as u64));
        ledger.quotes += buf[..read].iter().filter(|&&b| b == b'"').count() as u64;
        ledger.ended |= read == 0 && !buf.is_empty();
        ledger.offset += read as u64;
        ledger.since_record += read;
        Ok(read)
    }
}

impl Tracker {
    /// The line, counted from 1, of the byte at `offset`. Offsets asked
    /// must not decrease.
    pub fn line_of(&self, offset: u64) -> u64 {
        let mut ledger = self.0.lock().expect("never poisoned");
        while ledger
            .ahead
            .front()
            .is_some_and(|&newline| newline < offset)
        {
            ledger.ahead.pop_front();
            ledger.counted += 1;
        }
        ledger.counted + 1
    }

    /// Whether the whole text was read and it held an odd number of quote
    /// characters: a quoted field ran to the end of the file.
    pub fn ended_inside_quotes(&self) -> bool {
        let ledger = self.0.lock().expect("never poisoned");
        ledger.ended && ledger.quotes % 2 == 1
    }

    /// A record was completed: the next one starts with a fresh budget.
    pub fn record_done(&self) {
        self.0.lock().expect("never poisoned").since_record = 0;
    }

    /// True once one record took more than `RECORD_LIMIT` bytes.
    pub fn exceeded(&self) -> bool {
        self.0.lock().expect("never poisoned").since_record > RECORD_LIMIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn decoded(bytes: &[u8]) -> (Vec<u8>, Encoding) {
        let (mut text, encoding) = decode(Cursor::new(bytes.to_vec())).unwrap();
        let mut out = Vec::new();
        text.read_to_end(&mut out).unwrap();
        (out, encoding)
    }

    fn utf16le(text: &str) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        bytes
    }

    #[test]
    fn plain_utf8_passes_through_with_invalid_bytes_kept() {
        let (out, encoding) = decoded(b"user\nJos\xE9\n");
        assert_eq!(out, b"user\nJos\xE9\n");
        assert_eq!(encoding, Encoding::Utf8);
    }

    #[test]
    fn a_utf8_byte_order_mark_is_dropped_and_nothing_else() {
        let (out, encoding) = decoded(b"\xEF\xBB\xBFuser\nJos\xE9\n");
        assert_eq!(out, b"user\nJos\xE9\n");
        assert_eq!(encoding, Encoding::Utf8Bom);
    }

    #[test]
    fn utf16_little_endian_is_decoded_to_utf8() {
        let (out, encoding) = decoded(&utf16le("upn\tid\r\nżółć@x\t𝔸=\r\n"));
        assert_eq!(String::from_utf8(out).unwrap(), "upn\tid\r\nżółć@x\t𝔸=\r\n");
        assert_eq!(encoding, Encoding::Utf16Le);
    }

    #[test]
    fn utf16_big_endian_is_decoded_to_utf8() {
        let mut bytes = vec![0xFE, 0xFF];
        bytes.extend("a,b\n".encode_utf16().flat_map(u16::to_be_bytes));
        let (out, encoding) = decoded(&bytes);
        assert_eq!(out, b"a,b\n");
        assert_eq!(encoding, Encoding::Utf16Be);
    }

    #[test]
    fn a_lone_surrogate_in_utf16_becomes_a_replacement_character() {
        let mut bytes = utf16le("a");
        bytes.extend([0x00, 0xD8]);
        bytes.extend("b".encode_utf16().flat_map(u16::to_le_bytes));
        let (out, _) = decoded(&bytes);
        assert_eq!(String::from_utf8(out).unwrap(), "a\u{FFFD}b");
    }

    #[test]
    fn a_tracked_reader_fails_past_the_limit_until_told_a_record_ended() {
        let (mut reader, tracker) = Tracked::new(io::repeat(b'x'));
        let mut buf = vec![0; 1 << 20];
        for _ in 0..4 {
            reader.read_exact(&mut buf).unwrap();
        }
        tracker.record_done();
        for _ in 0..5 {
            reader.read_exact(&mut buf).unwrap();
        }
        assert!(tracker.exceeded());
        assert!(reader.read(&mut buf).is_err());
    }

    #[test]
    fn a_tracked_reader_knows_the_line_of_each_byte() {
        let text = b"ab\r\n\ncd\nef";
        let (mut reader, tracker) = Tracked::new(Cursor::new(text.to_vec()));
        // Read in small pieces, as a buffered reader might.
        let mut buf = [0; 3];
        while reader.read(&mut buf).unwrap() > 0 {}
        let lines: Vec<u64> = (0..text.len() as u64).map(|i| tracker.line_of(i)).collect();
        assert_eq!(lines, [1, 1, 1, 1, 2, 3, 3, 3, 4, 4]);
    }
}
