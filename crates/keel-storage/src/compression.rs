//! Bounded decompression of record batch bodies, and compression for batches the
//! log cleaner rewrites.
//!
//! The broker decompresses producer batches only to validate them; it stores and
//! serves the compressed bytes. Every codec here stops at a byte limit, so a
//! "decompression bomb" costs at most that much memory.

use std::io::{Read, Write};

/// The codecs of RecordBatch v2 attributes bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn from_attributes(attributes: i16) -> Option<Codec> {
        Some(match attributes & 0x7 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    /// The codec's bits in a batch's attributes.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// A topic's `compression.type`: `None` for `producer` (keep the
    /// producer's codec), else the codec every batch is stored with.
    pub fn from_topic_config(value: &str) -> Option<Codec> {
        match value {
            "uncompressed" => Some(Codec::None),
            "gzip" => Some(Codec::Gzip),
            "snappy" => Some(Codec::Snappy),
            "lz4" => Some(Codec::Lz4),
            "zstd" => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// snappy-java's stream header, which the Java client writes (xerial framing).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// Decompresses `input` with `codec`, failing if the output would exceed `max_bytes`.
pub fn decompress(codec: Codec, input: &[u8], max_bytes: usize) -> Result<Vec<u8>, String> {
    match codec {
        Codec::None => Ok(input.to_vec()),
        Codec::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), max_bytes, "gzip"),
        Codec::Lz4 => {
            let d = lz4::Decoder::new(input).map_err(|e| format!("lz4: {e}"))?;
            read_bounded(d, max_bytes, "lz4")
        }
        Codec::Zstd => {
            let d = zstd::stream::read::Decoder::new(input).map_err(|e| format!("zstd: {e}"))?;
            read_bounded(d, max_bytes, "zstd")
        }
        Codec::Snappy => snappy(input, max_bytes),
    }
}

/// Compresses `input` with `codec`, in the framing Kafka's clients read: gzip,
/// snappy in snappy-java's xerial framing (which the Java client needs and
/// librdkafka accepts), the LZ4 frame format, zstd.
pub fn compress(codec: Codec, input: &[u8]) -> Result<Vec<u8>, String> {
    match codec {
        Codec::None => Ok(input.to_vec()),
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(input).map_err(|e| format!("gzip: {e}"))?;
            e.finish().map_err(|e| format!("gzip: {e}"))
        }
        Codec::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .map_err(|e| format!("lz4: {e}"))?;
            e.write_all(input).map_err(|e| format!("lz4: {e}"))?;
            let (out, r) = e.finish();
            r.map_err(|e| format!("lz4: {e}"))?;
            Ok(out)
        }
        Codec::Zstd => zstd::encode_all(input, 3).map_err(|e| format!("zstd: {e}")),
        Codec::Snappy => {
            let mut out = XERIAL_MAGIC.to_vec();
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
            let mut enc = snap::raw::Encoder::new();
            for chunk in input.chunks(32 * 1024) {
                let block = enc
                    .compress_vec(chunk)
                    .map_err(|e| format!("snappy: {e}"))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
    }
}

fn read_bounded(r: impl Read, max_bytes: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    r.take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{what}: {e}"))?;
    if out.len() > max_bytes {
        return Err(format!(
            "{what}: decompresses to more than {max_bytes} bytes"
        ));
    }
    Ok(out)
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<(), String> {
    let n = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    if out.len() + n > max_bytes {
        return Err(format!(
            "snappy: decompresses to more than {max_bytes} bytes"
        ));
    }
    let start = out.len();
    out.resize(start + n, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| format!("snappy: {e}"))?;
    Ok(())
}

/// Kafka's snappy is either raw snappy (librdkafka) or snappy-java's framing:
/// a 16-byte header, then blocks of `u32 length` + raw snappy.
fn snappy(input: &[u8], max_bytes: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if !input.starts_with(XERIAL_MAGIC) {
        snappy_block(input, &mut out, max_bytes)?;
        return Ok(out);
    }
    let mut rest = input
        .get(XERIAL_HEADER_BYTES..)
        .ok_or("snappy: truncated xerial header")?;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("snappy: truncated block length".into());
        }
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let block = rest.get(4..4 + n).ok_or("snappy: truncated block")?;
        snappy_block(block, &mut out, max_bytes)?;
        rest = &rest[4 + n..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let input: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let packed = compress(codec, &input).unwrap();
            assert_eq!(
                decompress(codec, &packed, 1 << 20).unwrap(),
                input,
                "{codec:?}"
            );
        }
    }
}
