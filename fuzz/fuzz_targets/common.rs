//! Input framing shared by the targets: parts separated by a 0xFF byte (never valid in UTF-8, so
//! a seed reads as the values it holds), each part read as UTF-8 with invalid bytes replaced.

use std::borrow::Cow;

/// The byte that separates the parts of an input.
pub const SEP: u8 = 0xFF;

/// Splits `data` into at most `max` text parts; the last part keeps any further separators.
pub fn parts(data: &[u8], max: usize) -> Vec<Cow<'_, str>> {
    data.splitn(max, |b| *b == SEP)
        .map(String::from_utf8_lossy)
        .collect()
}
