//! A parser for the CQL that Keel runs: a lexer and a recursive-descent
//! parser into [`Statement`]s. Errors are Cassandra's SyntaxException
//! messages in spirit (`line 1:14 no viable alternative at input 'x'`).

use keel_table::Literal;

/// A possibly keyspace-qualified name.
#[derive(Debug, Clone, PartialEq)]
pub struct QName {
    pub keyspace: Option<String>,
    pub name: String,
}

/// A value in a statement: a literal, a bind marker, or a function of terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Lit(Literal),
    /// The n-th bind marker (`?` or `:name`).
    Bind(usize),
    Func(String, Vec<Term>),
    /// `col + term` / `term + col` in an UPDATE's SET (collection append).
    Op(Box<Term>, char, Box<Term>),
    /// A column named in a SET expression.
    Column(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    Ne,
    In,
    Contains,
    ContainsKey,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lhs {
    Column(String),
    Token(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub lhs: Lhs,
    pub op: Op,
    /// For IN: the list (or one bind marker standing for the whole list).
    pub rhs: Vec<Term>,
    /// `IN ?`: one marker for the whole list.
    pub in_marker: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Using {
    pub ttl: Option<Term>,
    pub timestamp: Option<Term>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    None,
    IfExists,
    IfNotExists,
    /// `IF col op term AND ...`
    Columns(Vec<(String, Op, Term)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Column(String),
    CountAll,
    WriteTime(String),
    Ttl(String),
    Token(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub selector: Selector,
    pub alias: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    Logged,
    Unlogged,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AlterTableOp {
    Add(Vec<(String, String)>),
    Drop(Vec<String>),
    With(Vec<(String, Term)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Describe {
    Keyspaces,
    Keyspace(Option<String>),
    Tables,
    Table(QName),
    Cluster,
    Schema,
    /// DESCRIBE TYPES/FUNCTIONS/AGGREGATES: none exist.
    EmptyList,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Use(String),
    CreateKeyspace {
        name: String,
        if_not_exists: bool,
        options: Vec<(String, Term)>,
    },
    AlterKeyspace {
        name: String,
        options: Vec<(String, Term)>,
    },
    DropKeyspace {
        name: String,
        if_exists: bool,
    },
    CreateTable {
        table: QName,
        if_not_exists: bool,
        columns: Vec<(String, String)>,
        partition_key: Vec<String>,
        clustering: Vec<String>,
        clustering_order: Vec<(String, bool)>,
        options: Vec<(String, Term)>,
    },
    AlterTable {
        table: QName,
        op: AlterTableOp,
    },
    DropTable {
        table: QName,
        if_exists: bool,
    },
    Truncate(QName),
    Insert {
        table: QName,
        columns: Vec<String>,
        values: Vec<Term>,
        if_not_exists: bool,
        using: Using,
    },
    Update {
        table: QName,
        using: Using,
        set: Vec<(String, Term)>,
        wheres: Vec<Relation>,
        condition: Condition,
    },
    Delete {
        table: QName,
        columns: Vec<String>,
        using: Using,
        wheres: Vec<Relation>,
        condition: Condition,
    },
    Select {
        table: QName,
        distinct: bool,
        /// None: `*`.
        selection: Option<Vec<Selection>>,
        wheres: Vec<Relation>,
        order: Vec<(String, bool)>,
        limit: Option<Term>,
        per_partition_limit: Option<Term>,
        allow_filtering: bool,
    },
    Batch {
        kind: BatchKind,
        using: Using,
        statements: Vec<Statement>,
    },
    Describe(Describe),
}

/// A parsed statement and the names of its bind markers (None for `?`).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub statement: Statement,
    pub binds: Vec<Option<String>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier or keyword; `quoted` ones keep their case and are never keywords.
    Ident(String, bool),
    Str(String),
    Num(String),
    Uuid(String),
    Blob(Vec<u8>),
    Sym(&'static str),
    QMark,
    Named(String),
}

fn lex(s: &str) -> Result<Vec<(Tok, usize)>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') || c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            continue;
        }
        if c == b'\'' {
            let mut v = Vec::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(format!("unterminated string at character {start}")),
                    Some(b'\'') if b.get(i + 1) == Some(&b'\'') => {
                        v.push(b'\'');
                        i += 2;
                    }
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        v.push(x);
                        i += 1;
                    }
                }
            }
            out.push((
                Tok::Str(String::from_utf8(v).map_err(|_| "invalid UTF-8")?),
                start,
            ));
            continue;
        }
        if c == b'$' && b.get(i + 1) == Some(&b'$') {
            let rest = &s[i + 2..];
            let end = rest.find("$$").ok_or("unterminated $$ string")?;
            out.push((Tok::Str(rest[..end].to_string()), start));
            i += 2 + end + 2;
            continue;
        }
        if c == b'"' {
            let mut v = Vec::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => {
                        return Err(format!(
                            "unterminated quoted identifier at character {start}"
                        ))
                    }
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => {
                        v.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&x) => {
                        v.push(x);
                        i += 1;
                    }
                }
            }
            out.push((
                Tok::Ident(String::from_utf8(v).map_err(|_| "invalid UTF-8")?, true),
                start,
            ));
            continue;
        }
        if is_uuid_at(&b[i..]) {
            out.push((Tok::Uuid(s[i..i + 36].to_string()), start));
            i += 36;
            continue;
        }
        if c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
            i += 2;
            let hs = i;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            let hex = &s[hs..i];
            if !hex.len().is_multiple_of(2) {
                return Err(format!(
                    "invalid blob literal 0x{hex}: odd number of digits"
                ));
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|j| u8::from_str_radix(&hex[j..j + 2], 16).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            out.push((Tok::Blob(bytes), start));
            continue;
        }
        let neg_number = c == b'-'
            && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())
            && !matches!(
                out.last(),
                Some((Tok::Ident(..) | Tok::Num(_) | Tok::QMark, _)) | Some((Tok::Sym(")"), _))
            );
        if c.is_ascii_digit() || neg_number {
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let save = i;
                i += 1;
                if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                    i += 1;
                }
                if i < b.len() && b[i].is_ascii_digit() {
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i = save;
                }
            }
            out.push((Tok::Num(s[start..i].to_string()), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(s[start..i].to_ascii_lowercase(), false), start));
            continue;
        }
        if c == b'?' {
            out.push((Tok::QMark, start));
            i += 1;
            continue;
        }
        if c == b':'
            && b.get(i + 1)
                .is_some_and(|x| x.is_ascii_alphabetic() || *x == b'_')
        {
            i += 1;
            let ns = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Named(s[ns..i].to_ascii_lowercase()), start));
            continue;
        }
        let two = s.get(i..i + 2).unwrap_or("");
        let sym: &'static str = match two {
            "<=" => "<=",
            ">=" => ">=",
            "!=" => "!=",
            _ => match c {
                b'(' => "(",
                b')' => ")",
                b'{' => "{",
                b'}' => "}",
                b'[' => "[",
                b']' => "]",
                b',' => ",",
                b';' => ";",
                b'.' => ".",
                b'=' => "=",
                b'<' => "<",
                b'>' => ">",
                b'*' => "*",
                b'+' => "+",
                b'-' => "-",
                b':' => ":",
                _ => {
                    return Err(format!(
                        "line 1:{start} no viable alternative at character '{}'",
                        s[start..].chars().next().unwrap_or('?')
                    ))
                }
            },
        };
        i += sym.len();
        out.push((Tok::Sym(sym), start));
    }
    Ok(out)
}

fn is_uuid_at(b: &[u8]) -> bool {
    if b.len() < 36 {
        return false;
    }
    let ok = b[..36].iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    });
    ok && !b
        .get(36)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

struct P<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    at: usize,
    binds: Vec<Option<String>>,
}

/// Parses one statement (a trailing `;` is allowed).
pub fn parse(src: &str) -> Result<Parsed, String> {
    let toks = lex(src)?;
    let mut p = P {
        src,
        toks,
        at: 0,
        binds: Vec::new(),
    };
    let statement = p.statement()?;
    p.eat_sym(";");
    if p.at < p.toks.len() {
        return Err(p.unexpected());
    }
    Ok(Parsed {
        statement,
        binds: p.binds,
    })
}

impl P<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }

    fn unexpected(&self) -> String {
        match self.toks.get(self.at) {
            Some((_, pos)) => {
                let word: String = self.src[*pos..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                format!("line 1:{pos} no viable alternative at input '{word}'")
            }
            None => format!("line 1:{} mismatched input '<EOF>'", self.src.len()),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s, false)) if s == kw)
    }

    fn is_kw_at(&self, off: usize, kw: &str) -> bool {
        matches!(self.toks.get(self.at + off), Some((Tok::Ident(s, false), _)) if s == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn kw(&mut self, kw: &str) -> Result<(), String> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn sym(&mut self, s: &str) -> Result<(), String> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Ident(s, _)) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn qname(&mut self) -> Result<QName, String> {
        let first = self.ident()?;
        if self.eat_sym(".") {
            Ok(QName {
                keyspace: Some(first),
                name: self.ident()?,
            })
        } else {
            Ok(QName {
                keyspace: None,
                name: first,
            })
        }
    }

    fn if_not_exists(&mut self) -> Result<bool, String> {
        if self.is_kw("if") {
            self.at += 1;
            self.kw("not")?;
            self.kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn if_exists(&mut self) -> Result<bool, String> {
        if self.is_kw("if") {
            self.at += 1;
            self.kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn statement(&mut self) -> Result<Statement, String> {
        if self.eat_kw("use") {
            return Ok(Statement::Use(self.ident()?));
        }
        if self.eat_kw("create") {
            if self.eat_kw("keyspace") || self.eat_kw("schema") {
                let if_not_exists = self.if_not_exists()?;
                let name = self.ident()?;
                self.kw("with")?;
                let options = self.options()?;
                return Ok(Statement::CreateKeyspace {
                    name,
                    if_not_exists,
                    options,
                });
            }
            if self.eat_kw("table") || self.eat_kw("columnfamily") {
                return self.create_table();
            }
            return Err(self.unexpected());
        }
        if self.eat_kw("alter") {
            if self.eat_kw("keyspace") || self.eat_kw("schema") {
                let name = self.ident()?;
                self.kw("with")?;
                return Ok(Statement::AlterKeyspace {
                    name,
                    options: self.options()?,
                });
            }
            if self.eat_kw("table") || self.eat_kw("columnfamily") {
                let table = self.qname()?;
                let op = if self.eat_kw("add") {
                    let mut cols = Vec::new();
                    if self.eat_sym("(") {
                        loop {
                            let n = self.ident()?;
                            cols.push((n, self.cql_type()?));
                            if !self.eat_sym(",") {
                                break;
                            }
                        }
                        self.sym(")")?;
                    } else {
                        let n = self.ident()?;
                        cols.push((n, self.cql_type()?));
                    }
                    AlterTableOp::Add(cols)
                } else if self.eat_kw("drop") {
                    let mut cols = Vec::new();
                    if self.eat_sym("(") {
                        loop {
                            cols.push(self.ident()?);
                            if !self.eat_sym(",") {
                                break;
                            }
                        }
                        self.sym(")")?;
                    } else {
                        cols.push(self.ident()?);
                    }
                    AlterTableOp::Drop(cols)
                } else if self.eat_kw("with") {
                    AlterTableOp::With(self.options()?)
                } else {
                    return Err(self.unexpected());
                };
                return Ok(Statement::AlterTable { table, op });
            }
            return Err(self.unexpected());
        }
        if self.eat_kw("drop") {
            if self.eat_kw("keyspace") || self.eat_kw("schema") {
                let if_exists = self.if_exists()?;
                return Ok(Statement::DropKeyspace {
                    if_exists,
                    name: self.ident()?,
                });
            }
            if self.eat_kw("table") || self.eat_kw("columnfamily") {
                let if_exists = self.if_exists()?;
                return Ok(Statement::DropTable {
                    if_exists,
                    table: self.qname()?,
                });
            }
            return Err(self.unexpected());
        }
        if self.eat_kw("truncate") {
            self.eat_kw("table");
            return Ok(Statement::Truncate(self.qname()?));
        }
        if self.eat_kw("insert") {
            return self.insert();
        }
        if self.eat_kw("update") {
            return self.update();
        }
        if self.eat_kw("delete") {
            return self.delete();
        }
        if self.eat_kw("select") {
            return self.select();
        }
        if self.eat_kw("begin") {
            return self.batch();
        }
        if self.eat_kw("describe") || self.eat_kw("desc") {
            return self.describe();
        }
        Err(self.unexpected())
    }

    fn describe(&mut self) -> Result<Statement, String> {
        let d = if self.eat_kw("keyspaces") {
            Describe::Keyspaces
        } else if self.eat_kw("keyspace") || self.eat_kw("schema") && self.is_kw("keyspace") {
            let name = if self.peek().is_some() && !matches!(self.peek(), Some(Tok::Sym(";"))) {
                Some(self.ident()?)
            } else {
                None
            };
            Describe::Keyspace(name)
        } else if self.eat_kw("tables") || self.eat_kw("columnfamilies") {
            Describe::Tables
        } else if self.eat_kw("table") || self.eat_kw("columnfamily") {
            Describe::Table(self.qname()?)
        } else if self.eat_kw("cluster") {
            Describe::Cluster
        } else if self.eat_kw("full") || self.is_kw("schema") {
            self.eat_kw("schema");
            Describe::Schema
        } else if self.eat_kw("types") || self.eat_kw("functions") || self.eat_kw("aggregates") {
            Describe::EmptyList
        } else {
            // DESCRIBE <name>: a keyspace or a table.
            let q = self.qname()?;
            match q.keyspace {
                Some(_) => Describe::Table(q),
                None => Describe::Keyspace(Some(q.name)),
            }
        };
        self.eat_kw("with");
        self.eat_kw("internals");
        Ok(Statement::Describe(d))
    }

    fn cql_type(&mut self) -> Result<String, String> {
        let mut s = self.ident()?;
        if self.eat_sym("<") {
            s.push('<');
            loop {
                s.push_str(&self.cql_type()?);
                if self.eat_sym(",") {
                    s.push_str(", ");
                } else {
                    break;
                }
            }
            self.sym(">")?;
            s.push('>');
        }
        Ok(s)
    }

    /// `name = value AND ...`, where a value may be a map literal.
    fn options(&mut self) -> Result<Vec<(String, Term)>, String> {
        let mut out = Vec::new();
        loop {
            let name = self.ident()?;
            self.sym("=")?;
            let v = self.term()?;
            out.push((name, v));
            if !self.eat_kw("and") {
                break;
            }
        }
        Ok(out)
    }

    fn create_table(&mut self) -> Result<Statement, String> {
        let if_not_exists = self.if_not_exists()?;
        let table = self.qname()?;
        self.sym("(")?;
        let mut columns = Vec::new();
        let mut partition_key = Vec::new();
        let mut clustering = Vec::new();
        loop {
            if self.is_kw("primary") && self.is_kw_at(1, "key") {
                self.at += 2;
                self.sym("(")?;
                if self.eat_sym("(") {
                    loop {
                        partition_key.push(self.ident()?);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.sym(")")?;
                } else {
                    partition_key.push(self.ident()?);
                }
                while self.eat_sym(",") {
                    clustering.push(self.ident()?);
                }
                self.sym(")")?;
            } else {
                let name = self.ident()?;
                let ty = self.cql_type()?;
                if self.eat_kw("static") {
                    return Err("static columns are not supported".into());
                }
                if self.is_kw("primary") {
                    self.at += 1;
                    self.kw("key")?;
                    if !partition_key.is_empty() {
                        return Err("Multiple PRIMARY KEYs specified (exactly one required)".into());
                    }
                    partition_key.push(name.clone());
                }
                columns.push((name, ty));
            }
            if !self.eat_sym(",") {
                break;
            }
            if self.eat_sym(")") {
                self.at -= 1;
                break;
            }
        }
        self.sym(")")?;
        let mut options = Vec::new();
        let mut clustering_order = Vec::new();
        if self.eat_kw("with") {
            loop {
                if self.eat_kw("clustering") {
                    self.kw("order")?;
                    self.kw("by")?;
                    self.sym("(")?;
                    loop {
                        let c = self.ident()?;
                        let desc = if self.eat_kw("desc") {
                            true
                        } else {
                            self.eat_kw("asc");
                            false
                        };
                        clustering_order.push((c, desc));
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.sym(")")?;
                } else if self.eat_kw("compact") {
                    self.kw("storage")?;
                    return Err("COMPACT STORAGE tables are not supported".into());
                } else {
                    let name = self.ident()?;
                    self.sym("=")?;
                    options.push((name, self.term()?));
                }
                if !self.eat_kw("and") {
                    break;
                }
            }
        }
        Ok(Statement::CreateTable {
            table,
            if_not_exists,
            columns,
            partition_key,
            clustering,
            clustering_order,
            options,
        })
    }

    fn using(&mut self) -> Result<Using, String> {
        let mut u = Using::default();
        if self.eat_kw("using") {
            loop {
                if self.eat_kw("ttl") {
                    u.ttl = Some(self.term()?);
                } else if self.eat_kw("timestamp") {
                    u.timestamp = Some(self.term()?);
                } else {
                    return Err(self.unexpected());
                }
                if !self.eat_kw("and") {
                    break;
                }
            }
        }
        Ok(u)
    }

    fn insert(&mut self) -> Result<Statement, String> {
        self.kw("into")?;
        let table = self.qname()?;
        self.sym("(")?;
        let mut columns = Vec::new();
        loop {
            columns.push(self.ident()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.sym(")")?;
        if self.is_kw("json") {
            return Err("INSERT JSON is not supported".into());
        }
        self.kw("values")?;
        self.sym("(")?;
        let mut values = Vec::new();
        loop {
            values.push(self.term()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.sym(")")?;
        let if_not_exists = self.if_not_exists()?;
        let using = self.using()?;
        if columns.len() != values.len() {
            return Err(format!(
                "Unmatched column names/values: {} columns, {} values",
                columns.len(),
                values.len()
            ));
        }
        Ok(Statement::Insert {
            table,
            columns,
            values,
            if_not_exists,
            using,
        })
    }

    fn update(&mut self) -> Result<Statement, String> {
        let table = self.qname()?;
        let using = self.using()?;
        self.kw("set")?;
        let mut set = Vec::new();
        loop {
            let col = self.ident()?;
            if self.eat_sym("[") {
                return Err("setting collection elements by key or index is not supported".into());
            }
            self.sym("=")?;
            let t = self.set_expr()?;
            set.push((col, t));
            if !self.eat_sym(",") {
                break;
            }
        }
        self.kw("where")?;
        let wheres = self.relations()?;
        let condition = self.condition()?;
        Ok(Statement::Update {
            table,
            using,
            set,
            wheres,
            condition,
        })
    }

    /// A SET right-hand side: a term, or `col + term`, `term + col`, `col - term`.
    fn set_expr(&mut self) -> Result<Term, String> {
        let left = match self.peek() {
            Some(Tok::Ident(_, _))
                if !matches!(self.toks.get(self.at + 1), Some((Tok::Sym("("), _))) =>
            {
                let n = self.ident()?;
                if matches!(n.as_str(), "true" | "false" | "null" | "nan" | "infinity") {
                    self.at -= 1;
                    self.term()?
                } else {
                    Term::Column(n)
                }
            }
            _ => self.term()?,
        };
        for op in ["+", "-"] {
            if self.eat_sym(op) {
                let right = match self.peek() {
                    Some(Tok::Ident(_, _)) => Term::Column(self.ident()?),
                    _ => self.term()?,
                };
                return Ok(Term::Op(
                    Box::new(left),
                    op.chars().next().expect("op"),
                    Box::new(right),
                ));
            }
        }
        Ok(left)
    }

    fn delete(&mut self) -> Result<Statement, String> {
        let mut columns = Vec::new();
        if !self.is_kw("from") {
            loop {
                columns.push(self.ident()?);
                if self.eat_sym("[") {
                    return Err("deleting collection elements is not supported".into());
                }
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.kw("from")?;
        let table = self.qname()?;
        let using = self.using()?;
        self.kw("where")?;
        let wheres = self.relations()?;
        let condition = self.condition()?;
        Ok(Statement::Delete {
            table,
            columns,
            using,
            wheres,
            condition,
        })
    }

    fn condition(&mut self) -> Result<Condition, String> {
        if !self.eat_kw("if") {
            return Ok(Condition::None);
        }
        if self.eat_kw("exists") {
            return Ok(Condition::IfExists);
        }
        if self.is_kw("not") && self.is_kw_at(1, "exists") {
            self.at += 2;
            return Ok(Condition::IfNotExists);
        }
        let mut out = Vec::new();
        loop {
            let col = self.ident()?;
            let op = self.op()?;
            out.push((col, op, self.term()?));
            if !self.eat_kw("and") {
                break;
            }
        }
        Ok(Condition::Columns(out))
    }

    fn op(&mut self) -> Result<Op, String> {
        let op = match self.peek() {
            Some(Tok::Sym("=")) => Op::Eq,
            Some(Tok::Sym("<")) => Op::Lt,
            Some(Tok::Sym("<=")) => Op::Le,
            Some(Tok::Sym(">")) => Op::Gt,
            Some(Tok::Sym(">=")) => Op::Ge,
            Some(Tok::Sym("!=")) => Op::Ne,
            Some(Tok::Ident(s, false)) if s == "in" => Op::In,
            Some(Tok::Ident(s, false)) if s == "contains" => {
                if self.is_kw_at(1, "key") {
                    self.at += 1;
                    Op::ContainsKey
                } else {
                    Op::Contains
                }
            }
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        Ok(op)
    }

    fn relations(&mut self) -> Result<Vec<Relation>, String> {
        let mut out = Vec::new();
        loop {
            let lhs = if self.is_kw("token")
                && matches!(self.toks.get(self.at + 1), Some((Tok::Sym("("), _)))
            {
                self.at += 1;
                self.sym("(")?;
                let mut cols = Vec::new();
                loop {
                    cols.push(self.ident()?);
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.sym(")")?;
                Lhs::Token(cols)
            } else if matches!(self.peek(), Some(Tok::Sym("("))) {
                return Err("multi-column relations are not supported".into());
            } else {
                Lhs::Column(self.ident()?)
            };
            let op = self.op()?;
            let (rhs, in_marker) = if op == Op::In {
                if self.eat_sym("(") {
                    let mut v = Vec::new();
                    if !self.eat_sym(")") {
                        loop {
                            v.push(self.term()?);
                            if !self.eat_sym(",") {
                                break;
                            }
                        }
                        self.sym(")")?;
                    }
                    (v, false)
                } else {
                    (vec![self.term()?], true)
                }
            } else {
                (vec![self.term()?], false)
            };
            out.push(Relation {
                lhs,
                op,
                rhs,
                in_marker,
            });
            if !self.eat_kw("and") {
                break;
            }
        }
        Ok(out)
    }

    fn select(&mut self) -> Result<Statement, String> {
        if self.is_kw("json") {
            return Err("SELECT JSON is not supported".into());
        }
        let distinct = self.eat_kw("distinct");
        let selection = if self.eat_sym("*") {
            None
        } else {
            let mut v = Vec::new();
            loop {
                let selector = if (self.is_kw("count")
                    || self.is_kw("writetime")
                    || self.is_kw("ttl")
                    || self.is_kw("token"))
                    && matches!(self.toks.get(self.at + 1), Some((Tok::Sym("("), _)))
                {
                    let f = self.ident()?;
                    self.sym("(")?;
                    let s = match f.as_str() {
                        "count" => {
                            if !self.eat_sym("*") {
                                match self.peek() {
                                    Some(Tok::Num(n)) if n == "1" => self.at += 1,
                                    _ => {
                                        return Err(
                                            "only count(*) and count(1) are supported".into()
                                        )
                                    }
                                }
                            }
                            Selector::CountAll
                        }
                        "writetime" => Selector::WriteTime(self.ident()?),
                        "ttl" => Selector::Ttl(self.ident()?),
                        _ => {
                            let mut cols = Vec::new();
                            loop {
                                cols.push(self.ident()?);
                                if !self.eat_sym(",") {
                                    break;
                                }
                            }
                            Selector::Token(cols)
                        }
                    };
                    self.sym(")")?;
                    s
                } else {
                    Selector::Column(self.ident()?)
                };
                let alias = if self.eat_kw("as") {
                    Some(self.ident()?)
                } else {
                    None
                };
                v.push(Selection { selector, alias });
                if !self.eat_sym(",") {
                    break;
                }
            }
            Some(v)
        };
        self.kw("from")?;
        let table = self.qname()?;
        let wheres = if self.eat_kw("where") {
            self.relations()?
        } else {
            Vec::new()
        };
        let mut order = Vec::new();
        if self.eat_kw("order") {
            self.kw("by")?;
            loop {
                let c = self.ident()?;
                let desc = if self.eat_kw("desc") {
                    true
                } else {
                    self.eat_kw("asc");
                    false
                };
                order.push((c, desc));
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let mut per_partition_limit = None;
        if self.is_kw("per") {
            self.at += 1;
            self.kw("partition")?;
            self.kw("limit")?;
            per_partition_limit = Some(self.term()?);
        }
        let limit = if self.eat_kw("limit") {
            Some(self.term()?)
        } else {
            None
        };
        let allow_filtering = if self.eat_kw("allow") {
            self.kw("filtering")?;
            true
        } else {
            false
        };
        Ok(Statement::Select {
            table,
            distinct,
            selection,
            wheres,
            order,
            limit,
            per_partition_limit,
            allow_filtering,
        })
    }

    fn batch(&mut self) -> Result<Statement, String> {
        let kind = if self.eat_kw("unlogged") {
            BatchKind::Unlogged
        } else if self.eat_kw("counter") {
            return Err("counter batches are not supported".into());
        } else {
            self.eat_kw("logged");
            BatchKind::Logged
        };
        self.kw("batch")?;
        let using = self.using()?;
        let mut statements = Vec::new();
        loop {
            if self.eat_kw("apply") {
                self.kw("batch")?;
                break;
            }
            let s = if self.eat_kw("insert") {
                self.insert()?
            } else if self.eat_kw("update") {
                self.update()?
            } else if self.eat_kw("delete") {
                self.delete()?
            } else {
                return Err(self.unexpected());
            };
            statements.push(s);
            self.eat_sym(";");
        }
        Ok(Statement::Batch {
            kind,
            using,
            statements,
        })
    }

    fn term(&mut self) -> Result<Term, String> {
        let t = match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.at += 1;
                Term::Lit(Literal::Str(s))
            }
            Some(Tok::Num(n)) => {
                self.at += 1;
                Term::Lit(Literal::Number(n))
            }
            Some(Tok::Uuid(u)) => {
                self.at += 1;
                Term::Lit(Literal::Uuid(u))
            }
            Some(Tok::Blob(b)) => {
                self.at += 1;
                Term::Lit(Literal::Blob(b))
            }
            Some(Tok::QMark) => {
                self.at += 1;
                self.binds.push(None);
                Term::Bind(self.binds.len() - 1)
            }
            Some(Tok::Named(n)) => {
                self.at += 1;
                self.binds.push(Some(n));
                Term::Bind(self.binds.len() - 1)
            }
            Some(Tok::Sym("-")) => {
                // -NaN, -Infinity, and a negative number the tokenizer split
                // off a keyword (`USING TTL -1`)
                self.at += 1;
                if let Some(Tok::Num(n)) = self.peek().cloned() {
                    self.at += 1;
                    return Ok(Term::Lit(Literal::Number(format!("-{n}"))));
                }
                match self.ident()?.as_str() {
                    "nan" => Term::Lit(Literal::Number("NaN".into())),
                    "infinity" => Term::Lit(Literal::Number("-inf".into())),
                    _ => return Err(self.unexpected()),
                }
            }
            Some(Tok::Ident(s, false)) => {
                self.at += 1;
                match s.as_str() {
                    "true" => Term::Lit(Literal::Bool(true)),
                    "false" => Term::Lit(Literal::Bool(false)),
                    "null" => Term::Lit(Literal::Null),
                    "nan" => Term::Lit(Literal::Number("NaN".into())),
                    "infinity" => Term::Lit(Literal::Number("inf".into())),
                    _ if matches!(self.peek(), Some(Tok::Sym("("))) => {
                        self.at += 1;
                        let mut args = Vec::new();
                        if !self.eat_sym(")") {
                            loop {
                                args.push(self.term()?);
                                if !self.eat_sym(",") {
                                    break;
                                }
                            }
                            self.sym(")")?;
                        }
                        Term::Func(s, args)
                    }
                    _ => {
                        self.at -= 1;
                        return Err(self.unexpected());
                    }
                }
            }
            Some(Tok::Sym("[")) => {
                self.at += 1;
                let mut v = Vec::new();
                if !self.eat_sym("]") {
                    loop {
                        v.push(self.literal()?);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.sym("]")?;
                }
                Term::Lit(Literal::List(v))
            }
            Some(Tok::Sym("{")) => {
                self.at += 1;
                if self.eat_sym("}") {
                    return Ok(Term::Lit(Literal::Map(Vec::new())));
                }
                let first = self.literal()?;
                if self.eat_sym(":") {
                    let mut m = vec![(first, self.literal()?)];
                    while self.eat_sym(",") {
                        let k = self.literal()?;
                        self.sym(":")?;
                        m.push((k, self.literal()?));
                    }
                    self.sym("}")?;
                    Term::Lit(Literal::Map(m))
                } else {
                    let mut v = vec![first];
                    while self.eat_sym(",") {
                        v.push(self.literal()?);
                    }
                    self.sym("}")?;
                    Term::Lit(Literal::Set(v))
                }
            }
            _ => return Err(self.unexpected()),
        };
        Ok(t)
    }

    /// A literal inside a collection literal (no bind markers there).
    fn literal(&mut self) -> Result<Literal, String> {
        match self.term()? {
            Term::Lit(l) => Ok(l),
            _ => Err(
                "bind markers and functions inside collection literals are not supported".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_statements() {
        let p = parse("CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3} AND durable_writes = true;").unwrap();
        assert!(matches!(
            p.statement,
            Statement::CreateKeyspace {
                if_not_exists: true,
                ..
            }
        ));
        let p = parse("create table ks.t (k text, c int, v map<text, int>, primary key ((k), c)) with clustering order by (c desc) and gc_grace_seconds = 10").unwrap();
        match p.statement {
            Statement::CreateTable {
                columns,
                partition_key,
                clustering,
                clustering_order,
                options,
                ..
            } => {
                assert_eq!(columns[2], ("v".to_string(), "map<text, int>".to_string()));
                assert_eq!(partition_key, vec!["k"]);
                assert_eq!(clustering, vec!["c"]);
                assert_eq!(clustering_order, vec![("c".to_string(), true)]);
                assert_eq!(options.len(), 1);
            }
            s => panic!("{s:?}"),
        }
        let p =
            parse("INSERT INTO t (k, c, v) VALUES (?, :c, {'a': 1}) IF NOT EXISTS USING TTL 10")
                .unwrap();
        assert_eq!(p.binds, vec![None, Some("c".to_string())]);
        let p = parse("UPDATE t SET v = 'x', n = n + 1 WHERE k = 'a' AND c IN (1, 2) IF v = 'y'")
            .unwrap();
        assert!(matches!(
            p.statement,
            Statement::Update {
                condition: Condition::Columns(_),
                ..
            }
        ));
        let p = parse("SELECT k, count(*) AS n, writetime(v) FROM t WHERE token(k) > -5 AND c >= 1 ORDER BY c DESC LIMIT 10 ALLOW FILTERING").unwrap();
        assert!(matches!(
            p.statement,
            Statement::Select {
                allow_filtering: true,
                ..
            }
        ));
        let p = parse("BEGIN UNLOGGED BATCH INSERT INTO t (k) VALUES ('a'); DELETE FROM t WHERE k = 'b'; APPLY BATCH").unwrap();
        assert!(
            matches!(p.statement, Statement::Batch { ref statements, .. } if statements.len() == 2)
        );
        let p = parse("select * from t where id = 123e4567-e89b-12d3-a456-426614174000").unwrap();
        assert!(matches!(p.statement, Statement::Select { .. }));
        assert!(parse("SELEC * FROM t")
            .unwrap_err()
            .contains("no viable alternative"));
        assert!(parse("SELECT * FROM").is_err());
        assert!(parse("INSERT INTO t (a, b) VALUES (1)").is_err());
    }
}
