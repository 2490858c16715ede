//! CQL's types and values as Cassandra serialises them (the native protocol's
//! `[bytes]` encodings, which are also what the engine stores): parsing type
//! names, checking a client's bytes against a column's type, turning CQL
//! literals into those bytes, and an order-preserving encoding for clustering
//! keys.

use std::fmt;
use std::net::IpAddr;

/// A CQL data type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CqlType {
    Ascii,
    Text,
    Int,
    Bigint,
    Smallint,
    Tinyint,
    Boolean,
    Double,
    Float,
    Uuid,
    Timeuuid,
    Timestamp,
    Date,
    Time,
    Blob,
    Decimal,
    Varint,
    Inet,
    Duration,
    List(Box<CqlType>),
    Set(Box<CqlType>),
    Map(Box<CqlType>, Box<CqlType>),
    /// `frozen<...>`: a collection stored and compared as one value.
    Frozen(Box<CqlType>),
}

impl CqlType {
    /// Parses a CQL type name (`text`, `map<text, int>`, `frozen<list<int>>`).
    pub fn parse(s: &str) -> Result<CqlType, String> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        if let Some(open) = lower.find('<') {
            if !lower.ends_with('>') {
                return Err(format!("unknown type {s}"));
            }
            let outer = lower[..open].trim();
            let inner = &s[open + 1..s.len() - 1];
            let args = split_type_args(inner)?;
            let t = match (outer, args.as_slice()) {
                ("list", [a]) => CqlType::List(Box::new(Self::parse(a)?)),
                ("set", [a]) => CqlType::Set(Box::new(Self::parse(a)?)),
                ("map", [k, v]) => {
                    CqlType::Map(Box::new(Self::parse(k)?), Box::new(Self::parse(v)?))
                }
                ("frozen", [a]) => {
                    let t = Self::parse(a)?;
                    if !t.is_collection() {
                        return Err(format!("frozen<> is only for collections, not {t}"));
                    }
                    CqlType::Frozen(Box::new(t))
                }
                _ => return Err(format!("unknown type {s}")),
            };
            if let CqlType::List(e) | CqlType::Set(e) = &t {
                e.check_nested()?;
            }
            if let CqlType::Map(k, v) = &t {
                k.check_nested()?;
                v.check_nested()?;
            }
            return Ok(t);
        }
        Ok(match lower.as_str() {
            "ascii" => CqlType::Ascii,
            "text" | "varchar" => CqlType::Text,
            "int" => CqlType::Int,
            "bigint" => CqlType::Bigint,
            "smallint" => CqlType::Smallint,
            "tinyint" => CqlType::Tinyint,
            "boolean" => CqlType::Boolean,
            "double" => CqlType::Double,
            "float" => CqlType::Float,
            "uuid" => CqlType::Uuid,
            "timeuuid" => CqlType::Timeuuid,
            "timestamp" => CqlType::Timestamp,
            "date" => CqlType::Date,
            "time" => CqlType::Time,
            "blob" => CqlType::Blob,
            "decimal" => CqlType::Decimal,
            "varint" => CqlType::Varint,
            "inet" => CqlType::Inet,
            "duration" => CqlType::Duration,
            "counter" => return Err("counter columns are not supported".into()),
            _ => return Err(format!("unknown type {s}")),
        })
    }

    /// A collection inside a collection must be frozen, as in Cassandra.
    fn check_nested(&self) -> Result<(), String> {
        if self.is_collection() {
            Err(format!(
                "non-frozen collections are not allowed inside collections: {self}"
            ))
        } else {
            Ok(())
        }
    }

    pub fn is_collection(&self) -> bool {
        matches!(self, CqlType::List(_) | CqlType::Set(_) | CqlType::Map(..))
    }

    /// The type without `frozen<>`.
    pub fn unfrozen(&self) -> &CqlType {
        match self {
            CqlType::Frozen(t) => t,
            t => t,
        }
    }

    /// Whether values of this type can be a clustering column (ordered by
    /// [`order_key`]).
    pub fn orderable(&self) -> bool {
        !matches!(
            self.unfrozen(),
            CqlType::Decimal
                | CqlType::Varint
                | CqlType::Duration
                | CqlType::List(_)
                | CqlType::Set(_)
                | CqlType::Map(..)
        )
    }
}

impl fmt::Display for CqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            CqlType::Ascii => "ascii",
            CqlType::Text => "text",
            CqlType::Int => "int",
            CqlType::Bigint => "bigint",
            CqlType::Smallint => "smallint",
            CqlType::Tinyint => "tinyint",
            CqlType::Boolean => "boolean",
            CqlType::Double => "double",
            CqlType::Float => "float",
            CqlType::Uuid => "uuid",
            CqlType::Timeuuid => "timeuuid",
            CqlType::Timestamp => "timestamp",
            CqlType::Date => "date",
            CqlType::Time => "time",
            CqlType::Blob => "blob",
            CqlType::Decimal => "decimal",
            CqlType::Varint => "varint",
            CqlType::Inet => "inet",
            CqlType::Duration => "duration",
            CqlType::List(e) => return write!(f, "list<{e}>"),
            CqlType::Set(e) => return write!(f, "set<{e}>"),
            CqlType::Map(k, v) => return write!(f, "map<{k}, {v}>"),
            CqlType::Frozen(t) => return write!(f, "frozen<{t}>"),
        };
        f.write_str(s)
    }
}

fn split_type_args(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced type arguments in {s}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced type arguments in {s}"));
    }
    out.push(s[start..].trim());
    Ok(out)
}

/// A literal as written in a CQL statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    /// `'...'`, quotes removed.
    Str(String),
    /// An integer or decimal number, as written.
    Number(String),
    Bool(bool),
    /// A bare UUID.
    Uuid(String),
    /// `0x...`, decoded.
    Blob(Vec<u8>),
    List(Vec<Literal>),
    Set(Vec<Literal>),
    Map(Vec<(Literal, Literal)>),
}

/// Turns a literal into the bytes of a `ty` value (None for null).
pub fn encode_literal(ty: &CqlType, lit: &Literal) -> Result<Option<Vec<u8>>, String> {
    if *lit == Literal::Null {
        return Ok(None);
    }
    let bad = || format!("invalid {ty} literal: {}", describe(lit));
    let bytes = match (ty.unfrozen(), lit) {
        (CqlType::Ascii, Literal::Str(s)) => {
            if !s.is_ascii() {
                return Err(format!("invalid ASCII character in string literal '{s}'"));
            }
            s.as_bytes().to_vec()
        }
        (CqlType::Text, Literal::Str(s)) => s.as_bytes().to_vec(),
        (CqlType::Int, Literal::Number(n)) => int::<i32>(n)?.to_be_bytes().to_vec(),
        (CqlType::Bigint, Literal::Number(n)) => int::<i64>(n)?.to_be_bytes().to_vec(),
        (CqlType::Smallint, Literal::Number(n)) => int::<i16>(n)?.to_be_bytes().to_vec(),
        (CqlType::Tinyint, Literal::Number(n)) => int::<i8>(n)?.to_be_bytes().to_vec(),
        (CqlType::Boolean, Literal::Bool(b)) => vec![*b as u8],
        (CqlType::Double, Literal::Number(n)) => {
            n.parse::<f64>().map_err(|_| bad())?.to_be_bytes().to_vec()
        }
        (CqlType::Float, Literal::Number(n)) => {
            n.parse::<f32>().map_err(|_| bad())?.to_be_bytes().to_vec()
        }
        (CqlType::Uuid, Literal::Uuid(u)) => parse_uuid(u).ok_or_else(bad)?.to_vec(),
        (CqlType::Timeuuid, Literal::Uuid(u)) => {
            let b = parse_uuid(u).ok_or_else(bad)?;
            if b[6] >> 4 != 1 {
                return Err(format!(
                    "unsupported UUID for timeuuid: {u} is not a version 1 UUID"
                ));
            }
            b.to_vec()
        }
        (CqlType::Timestamp, Literal::Number(n)) => int::<i64>(n)?.to_be_bytes().to_vec(),
        (CqlType::Timestamp, Literal::Str(s)) => parse_timestamp(s)
            .ok_or_else(|| format!("unable to parse a date from '{s}'"))?
            .to_be_bytes()
            .to_vec(),
        (CqlType::Date, Literal::Str(s)) => {
            let days = parse_date(s)
                .ok_or_else(|| format!("unable to coerce '{s}' to a formatted date (long)"))?;
            ((days + (1i64 << 31)) as u32).to_be_bytes().to_vec()
        }
        (CqlType::Date, Literal::Number(n)) => {
            let v: u32 = n.parse().map_err(|_| bad())?;
            v.to_be_bytes().to_vec()
        }
        (CqlType::Time, Literal::Str(s)) => parse_time(s)
            .ok_or_else(|| format!("unable to coerce '{s}' to a formatted time (long)"))?
            .to_be_bytes()
            .to_vec(),
        (CqlType::Time, Literal::Number(n)) => int::<i64>(n)?.to_be_bytes().to_vec(),
        (CqlType::Blob, Literal::Blob(b)) => b.clone(),
        (CqlType::Varint, Literal::Number(n)) => varint_bytes(int::<i128>(n)?),
        (CqlType::Decimal, Literal::Number(n)) => decimal_bytes(n).ok_or_else(bad)?,
        (CqlType::Inet, Literal::Str(s)) => match s.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        },
        (CqlType::List(e), Literal::List(items)) => collection(e, items)?,
        // An empty `{}` parses as a map; it is also an empty set.
        (CqlType::Set(e), Literal::Set(items)) => {
            let mut enc = items
                .iter()
                .map(|i| element(e, i))
                .collect::<Result<Vec<_>, _>>()?;
            sort_dedup(e, &mut enc);
            frame_elements(enc.iter().map(|v| v.as_slice()))
        }
        (CqlType::Set(_), Literal::Map(m)) if m.is_empty() => 0i32.to_be_bytes().to_vec(),
        (CqlType::Map(k, v), Literal::Map(entries)) => {
            let mut enc = entries
                .iter()
                .map(|(a, b)| Ok((element(k, a)?, element(v, b)?)))
                .collect::<Result<Vec<_>, String>>()?;
            enc.sort_by_key(|a| order_key(k, &a.0));
            enc.dedup_by(|a, b| a.0 == b.0);
            let mut out = (enc.len() as i32).to_be_bytes().to_vec();
            for (a, b) in enc {
                out.extend_from_slice(&(a.len() as i32).to_be_bytes());
                out.extend_from_slice(&a);
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(&b);
            }
            out
        }
        _ => return Err(bad()),
    };
    Ok(Some(bytes))
}

fn describe(lit: &Literal) -> String {
    match lit {
        Literal::Str(s) => format!("'{s}'"),
        Literal::Number(n) => n.clone(),
        Literal::Bool(b) => b.to_string(),
        Literal::Uuid(u) => u.clone(),
        Literal::Null => "null".into(),
        Literal::Blob(_) => "blob".into(),
        Literal::List(_) => "list".into(),
        Literal::Set(_) => "set".into(),
        Literal::Map(_) => "map".into(),
    }
}

fn element(ty: &CqlType, lit: &Literal) -> Result<Vec<u8>, String> {
    encode_literal(ty, lit)?.ok_or_else(|| "null is not supported inside collections".to_string())
}

fn collection(e: &CqlType, items: &[Literal]) -> Result<Vec<u8>, String> {
    let enc = items
        .iter()
        .map(|i| element(e, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(frame_elements(enc.iter().map(|v| v.as_slice())))
}

fn sort_dedup(e: &CqlType, items: &mut Vec<Vec<u8>>) {
    items.sort_by_key(|a| order_key(e, a));
    items.dedup();
}

fn frame_elements<'a>(items: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = (items.len() as i32).to_be_bytes().to_vec();
    for i in items {
        out.extend_from_slice(&(i.len() as i32).to_be_bytes());
        out.extend_from_slice(i);
    }
    out
}

fn int<T: std::str::FromStr>(n: &str) -> Result<T, String> {
    n.parse::<T>()
        .map_err(|_| format!("invalid or out of range integer {n}"))
}

fn varint_bytes(v: i128) -> Vec<u8> {
    let b = v.to_be_bytes();
    let mut i = 0;
    while i < 15 {
        let drop = (b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0);
        if !drop {
            break;
        }
        i += 1;
    }
    b[i..].to_vec()
}

fn decimal_bytes(n: &str) -> Option<Vec<u8>> {
    let (mantissa, exp) = match n.find(['e', 'E']) {
        Some(i) => (&n[..i], n[i + 1..].parse::<i32>().ok()?),
        None => (n, 0),
    };
    let (int_part, frac) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    let digits = format!("{int_part}{frac}");
    let unscaled: i128 = digits.parse().ok()?;
    let scale = frac.len() as i32 - exp;
    let mut out = scale.to_be_bytes().to_vec();
    out.extend(varint_bytes(unscaled));
    Some(out)
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `hh:mm[:ss[.fffffffff]]` to nanoseconds since midnight.
fn parse_time(s: &str) -> Option<i64> {
    let (hms, frac) = match s.find('.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 || frac.len() > 9 {
        return None;
    }
    let h: i64 = parts[0].parse().ok()?;
    let m: i64 = parts[1].parse().ok()?;
    let sec: i64 = parts.get(2).map_or(Some(0), |p| p.parse().ok())?;
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(((h * 60 + m) * 60 + sec) * 1_000_000_000 + nanos)
}

/// Cassandra's timestamp strings: `yyyy-mm-dd[( |T)hh:mm[:ss[.fff]]][Z|(+|-)hh[:]mm]`,
/// UTC when no zone is given; milliseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], s[i + 1..].trim()),
        None => (s, ""),
    };
    let days = parse_date(date)?;
    let mut offset_min = 0i64;
    let mut time = rest;
    if let Some(stripped) = rest.strip_suffix('Z') {
        time = stripped;
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let zone = rest[i + 1..].replace(':', "");
        if zone.len() != 4 {
            return None;
        }
        let h: i64 = zone[..2].parse().ok()?;
        let m: i64 = zone[2..].parse().ok()?;
        offset_min = (h * 60 + m) * if &rest[i..=i] == "-" { -1 } else { 1 };
        time = rest[..i].trim();
    }
    let nanos = if time.is_empty() {
        0
    } else {
        parse_time(time)?
    };
    Some(days * 86_400_000 + nanos / 1_000_000 - offset_min * 60_000)
}

/// Checks that `b` is a well-formed value of `ty` (what a client sent as a
/// bound value), so nothing malformed is stored or served.
pub fn validate(ty: &CqlType, b: &[u8]) -> Result<(), String> {
    let fixed = |n: usize| {
        if b.len() == n {
            Ok(())
        } else {
            Err(format!(
                "expected {n} bytes for a {ty} value, got {}",
                b.len()
            ))
        }
    };
    match ty.unfrozen() {
        CqlType::Ascii => {
            if b.is_ascii() {
                Ok(())
            } else {
                Err("invalid bytes for ascii".into())
            }
        }
        CqlType::Text => std::str::from_utf8(b)
            .map(|_| ())
            .map_err(|_| "invalid UTF-8 bytes for text".into()),
        CqlType::Int | CqlType::Float => fixed(4),
        CqlType::Bigint | CqlType::Double | CqlType::Timestamp | CqlType::Time => fixed(8),
        CqlType::Smallint => fixed(2),
        CqlType::Tinyint | CqlType::Boolean => fixed(1),
        CqlType::Uuid => fixed(16),
        CqlType::Timeuuid => {
            fixed(16)?;
            if b[6] >> 4 == 1 {
                Ok(())
            } else {
                Err("unsupported UUID for timeuuid: not a version 1 UUID".into())
            }
        }
        CqlType::Date => fixed(4),
        CqlType::Blob | CqlType::Duration => Ok(()),
        CqlType::Decimal => {
            if b.len() >= 5 {
                Ok(())
            } else {
                Err("invalid bytes for decimal".into())
            }
        }
        CqlType::Varint => {
            if b.is_empty() {
                Err("invalid bytes for varint".into())
            } else {
                Ok(())
            }
        }
        CqlType::Inet => {
            if b.len() == 4 || b.len() == 16 {
                Ok(())
            } else {
                Err(format!("invalid length {} for inet", b.len()))
            }
        }
        CqlType::List(e) | CqlType::Set(e) => {
            for item in elements(b, 1)? {
                validate(
                    e,
                    item.first()
                        .copied()
                        .flatten()
                        .ok_or("null inside a collection")?,
                )?;
            }
            Ok(())
        }
        CqlType::Map(k, v) => {
            for kv in elements(b, 2)? {
                validate(k, kv[0].ok_or("null map key")?)?;
                validate(v, kv[1].ok_or("null map value")?)?;
            }
            Ok(())
        }
        CqlType::Frozen(_) => unreachable!("unfrozen"),
    }
}

/// Splits a serialised collection into its elements (`per` values each: 1
/// for lists and sets, 2 for maps); never allocates from the count.
pub fn elements(b: &[u8], per: usize) -> Result<Vec<Vec<Option<&[u8]>>>, String> {
    let bad = || "malformed collection value".to_string();
    let mut rest = b;
    let n = take_i32(&mut rest).ok_or_else(bad)?;
    if n < 0 {
        return Err(bad());
    }
    let mut out = Vec::new();
    for _ in 0..n {
        let mut item = Vec::with_capacity(per);
        for _ in 0..per {
            let len = take_i32(&mut rest).ok_or_else(bad)?;
            if len < 0 {
                item.push(None);
                continue;
            }
            let len = len as usize;
            if rest.len() < len {
                return Err(bad());
            }
            item.push(Some(&rest[..len]));
            rest = &rest[len..];
        }
        out.push(item);
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

fn take_i32(b: &mut &[u8]) -> Option<i32> {
    if b.len() < 4 {
        return None;
    }
    let v = i32::from_be_bytes(b[..4].try_into().ok()?);
    *b = &b[4..];
    Some(v)
}

/// An encoding of a `ty` value whose byte order is Cassandra's order of the
/// values, and which no other encoding of the same type is a prefix of: what
/// clustering keys (and collection elements) are sorted by.
pub fn order_key(ty: &CqlType, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 2);
    push_order_key(ty, b, &mut out);
    out
}

/// Appends [`order_key`] to `out`.
pub fn push_order_key(ty: &CqlType, b: &[u8], out: &mut Vec<u8>) {
    match ty.unfrozen() {
        CqlType::Int
        | CqlType::Bigint
        | CqlType::Smallint
        | CqlType::Tinyint
        | CqlType::Timestamp
        | CqlType::Time
            if !b.is_empty() =>
        {
            out.push(b[0] ^ 0x80);
            out.extend_from_slice(&b[1..]);
        }
        CqlType::Double | CqlType::Float if !b.is_empty() => {
            if b[0] & 0x80 != 0 {
                out.extend(b.iter().map(|x| !x));
            } else {
                out.push(b[0] ^ 0x80);
                out.extend_from_slice(&b[1..]);
            }
        }
        CqlType::Timeuuid | CqlType::Uuid if b.len() == 16 => {
            // Version first (UUIDType), then time-based UUIDs by their time
            // (time_hi, time_mid, time_low), then the rest.
            out.push(b[6] >> 4);
            if b[6] >> 4 == 1 {
                out.extend_from_slice(&[b[6] & 0x0f, b[7], b[4], b[5], b[0], b[1], b[2], b[3]]);
                out.extend_from_slice(&b[8..]);
            } else {
                out.extend_from_slice(b);
            }
        }
        CqlType::Boolean | CqlType::Date => out.extend_from_slice(b),
        _ => {
            // Variable length: 0x00 escaped as 0x00 0xff, ended by 0x00 0x01.
            for &x in b {
                out.push(x);
                if x == 0 {
                    out.push(0xff);
                }
            }
            out.extend_from_slice(&[0, 1]);
        }
    }
}

/// The length of the [`order_key`] of a `ty` value at the start of `b`.
pub fn order_key_len(ty: &CqlType, b: &[u8]) -> Option<usize> {
    let fixed = |n: usize| (b.len() >= n).then_some(n);
    match ty.unfrozen() {
        CqlType::Int | CqlType::Float | CqlType::Date => fixed(4),
        CqlType::Bigint | CqlType::Timestamp | CqlType::Time | CqlType::Double => fixed(8),
        CqlType::Smallint => fixed(2),
        CqlType::Tinyint | CqlType::Boolean => fixed(1),
        CqlType::Timeuuid | CqlType::Uuid => fixed(17),
        _ => {
            let mut i = 0;
            while i + 1 < b.len() {
                if b[i] == 0 {
                    if b[i + 1] == 1 {
                        return Some(i + 2);
                    }
                    i += 2;
                } else {
                    i += 1;
                }
            }
            None
        }
    }
}

/// The value whose [`order_key`] is `k` (exactly one key, no more bytes).
pub fn from_order_key(ty: &CqlType, k: &[u8]) -> Vec<u8> {
    match ty.unfrozen() {
        CqlType::Int
        | CqlType::Bigint
        | CqlType::Smallint
        | CqlType::Tinyint
        | CqlType::Timestamp
        | CqlType::Time
            if !k.is_empty() =>
        {
            let mut v = k.to_vec();
            v[0] ^= 0x80;
            v
        }
        CqlType::Double | CqlType::Float if !k.is_empty() => {
            if k[0] & 0x80 != 0 {
                let mut v = k.to_vec();
                v[0] ^= 0x80;
                v
            } else {
                k.iter().map(|x| !x).collect()
            }
        }
        CqlType::Timeuuid | CqlType::Uuid if k.len() == 17 => {
            let t = &k[1..];
            if k[0] == 1 {
                let mut v = vec![t[4], t[5], t[6], t[7], t[2], t[3], t[0] | 0x10, t[1]];
                v.extend_from_slice(&t[8..]);
                v
            } else {
                t.to_vec()
            }
        }
        CqlType::Boolean | CqlType::Date => k.to_vec(),
        _ => {
            let body = &k[..k.len().saturating_sub(2)];
            let mut v = Vec::with_capacity(body.len());
            let mut i = 0;
            while i < body.len() {
                v.push(body[i]);
                i += if body[i] == 0 { 2 } else { 1 };
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn type_names_round_trip() {
        for s in [
            "text",
            "int",
            "map<text, int>",
            "frozen<list<int>>",
            "list<frozen<set<uuid>>>",
        ] {
            assert_eq!(CqlType::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(CqlType::parse("VARCHAR").unwrap(), CqlType::Text);
        assert!(CqlType::parse("list<list<int>>").is_err());
        assert!(CqlType::parse("frozen<int>").is_err());
        assert!(CqlType::parse("map<int>").is_err());
        assert!(CqlType::parse("nope").is_err());
    }

    #[test]
    fn timestamps_parse_as_cassandra_does() {
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(
            parse_timestamp("2011-02-03 04:05:00+0000"),
            Some(1_296_705_900_000)
        );
        assert_eq!(
            parse_timestamp("2011-02-03T04:05:00.123Z"),
            Some(1_296_705_900_123)
        );
        assert_eq!(
            parse_timestamp("2011-02-03 05:05:00+01:00"),
            Some(1_296_705_900_000)
        );
        assert_eq!(parse_timestamp("2011-13-03"), None);
    }

    #[test]
    fn literals_are_checked() {
        assert_eq!(
            encode_literal(&CqlType::Int, &Literal::Number("7".into())).unwrap(),
            Some(vec![0, 0, 0, 7])
        );
        assert!(encode_literal(&CqlType::Int, &Literal::Number("99999999999".into())).is_err());
        assert!(encode_literal(&CqlType::Int, &Literal::Str("7".into())).is_err());
        let set = encode_literal(
            &CqlType::parse("set<int>").unwrap(),
            &Literal::Set(vec![
                Literal::Number("3".into()),
                Literal::Number("-1".into()),
                Literal::Number("3".into()),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            set,
            [
                &2i32.to_be_bytes()[..],
                &4i32.to_be_bytes(),
                &(-1i32).to_be_bytes(),
                &4i32.to_be_bytes(),
                &3i32.to_be_bytes()
            ]
            .concat()
        );
        assert_eq!(
            encode_literal(&CqlType::Decimal, &Literal::Number("-1.25".into())).unwrap(),
            Some(vec![0, 0, 0, 2, 0x83])
        );
    }

    fn typed_value() -> impl Strategy<Value = (CqlType, Vec<u8>)> {
        prop_oneof![
            any::<i32>().prop_map(|v| (CqlType::Int, v.to_be_bytes().to_vec())),
            any::<i64>().prop_map(|v| (CqlType::Bigint, v.to_be_bytes().to_vec())),
            any::<f64>()
                .prop_filter("not NaN", |v| !v.is_nan())
                .prop_map(|v| (CqlType::Double, v.to_be_bytes().to_vec())),
            ".{0,8}".prop_map(|v| (CqlType::Text, v.into_bytes())),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(|v| (CqlType::Blob, v)),
        ]
    }

    fn cmp_values(ty: &CqlType, a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        match ty {
            CqlType::Int => i32::from_be_bytes(a.try_into().unwrap())
                .cmp(&i32::from_be_bytes(b.try_into().unwrap())),
            CqlType::Bigint => i64::from_be_bytes(a.try_into().unwrap())
                .cmp(&i64::from_be_bytes(b.try_into().unwrap())),
            CqlType::Double => f64::from_be_bytes(a.try_into().unwrap())
                .partial_cmp(&f64::from_be_bytes(b.try_into().unwrap()))
                .unwrap(),
            _ => a.cmp(b),
        }
    }

    proptest! {
        #[test]
        fn order_keys_sort_like_values_and_decode((ty, a) in typed_value(), b in proptest::collection::vec(any::<u8>(), 0..8)) {
            let b = match ty {
                CqlType::Int | CqlType::Bigint | CqlType::Double => {
                    let mut x = a.clone();
                    for (i, v) in b.iter().enumerate().take(x.len()) { x[i] ^= v; }
                    if ty == CqlType::Double && f64::from_be_bytes(x.clone().try_into().unwrap()).is_nan() { a.clone() } else { x }
                }
                CqlType::Text => String::from_utf8_lossy(&b).into_owned().into_bytes(),
                _ => b,
            };
            let (ka, kb) = (order_key(&ty, &a), order_key(&ty, &b));
            if !(ty == CqlType::Double && cmp_values(&ty, &a, &b) == std::cmp::Ordering::Equal) {
                prop_assert_eq!(ka.cmp(&kb), cmp_values(&ty, &a, &b));
            }
            prop_assert_eq!(from_order_key(&ty, &ka), a.clone());
            let mut joined = ka.clone();
            joined.extend_from_slice(&kb);
            prop_assert_eq!(order_key_len(&ty, &joined), Some(ka.len()));
        }
    }
}
