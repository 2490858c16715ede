//! SELECT and compare-and-set: which key ranges a query reads, rows
//! assembled from cells (deletions, TTLs and the row marker applied), the
//! WHERE clause's rules (what needs ALLOW FILTERING, as Cassandra decides),
//! ORDER BY, LIMIT, PER PARTITION LIMIT, DISTINCT, aggregates and paging.

use std::collections::HashMap;

use cassandra_protocol::consistency::Consistency;
use keel_meta::ColumnKind;
use keel_table::cell::{self, Cell, CellKind};
use keel_table::types::{self, CqlType};
use keel_table::Mutation;

use crate::error::CqlError;
use crate::exec::{Binds, ColumnSpec, Node, Outcome, Params, Rows};
use crate::parser::{Condition, Lhs, Op, Relation, Selection, Selector, Statement, Term};
use crate::table::{Col, TableSchema};

/// A clustering column's slice bounds: each operator with its encoded value.
type Bounds = Vec<(Op, Vec<u8>)>;

/// The message Cassandra gives a query that would have to filter.
pub const NEEDS_FILTERING: &str = "Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING";

/// One live row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its row prefix in the engine (what paging resumes after).
    pub key: Vec<u8>,
    pub token: i64,
    /// The partition's prefix (rows of one partition share it).
    pub partition: Vec<u8>,
    pub pk: Vec<Vec<u8>>,
    pub ck: Vec<Vec<u8>>,
    /// Live regular cells by column id.
    pub cells: HashMap<u32, Cell>,
}

impl Row {
    /// A column's value in this row.
    pub fn value(&self, t: &TableSchema, c: &Col) -> Option<Vec<u8>> {
        match c.kind {
            ColumnKind::PartitionKey => {
                let i = t.partition_key.iter().position(|x| x.id == c.id)?;
                self.pk.get(i).cloned()
            }
            ColumnKind::Clustering => {
                let i = t.clustering.iter().position(|x| x.id == c.id)?;
                self.ck.get(i).cloned()
            }
            ColumnKind::Regular => self.cells.get(&c.id).map(|x| x.value.clone()),
        }
    }
}

/// The result columns of a SELECT.
pub fn result_columns(t: &TableSchema, s: &Statement) -> Result<Vec<ColumnSpec>, CqlError> {
    let Statement::Select {
        selection,
        distinct,
        ..
    } = s
    else {
        return Ok(Vec::new());
    };
    let spec = |name: &str, ty: CqlType| ColumnSpec {
        keyspace: t.keyspace.clone(),
        table: t.name.clone(),
        name: name.to_string(),
        ty,
    };
    let Some(sel) = selection else {
        if *distinct {
            return Ok(t
                .partition_key
                .iter()
                .map(|c| spec(&c.name, c.ty.clone()))
                .collect());
        }
        return Ok(t.all().map(|c| spec(&c.name, c.ty.clone())).collect());
    };
    let mut out = Vec::new();
    for Selection { selector, alias } in sel {
        let (name, ty) = match selector {
            Selector::Column(n) => {
                let c = t.column(n)?;
                if *distinct && c.kind != ColumnKind::PartitionKey {
                    return Err(CqlError::Invalid(format!(
                        "SELECT DISTINCT queries must only request partition key columns and/or static columns (not {n})"
                    )));
                }
                (n.clone(), c.ty.clone())
            }
            Selector::CountAll => ("count".to_string(), CqlType::Bigint),
            Selector::WriteTime(n) | Selector::Ttl(n) => {
                let c = t.column(n)?;
                if c.kind != ColumnKind::Regular {
                    return Err(CqlError::Invalid(format!(
                        "Cannot use selection function {} on PRIMARY KEY part {n}",
                        if matches!(selector, Selector::Ttl(_)) {
                            "ttl"
                        } else {
                            "writeTime"
                        }
                    )));
                }
                if c.ty.is_collection() && !matches!(c.ty, CqlType::Frozen(_)) {
                    return Err(CqlError::Invalid(format!(
                        "Cannot use selection function {} on non-frozen collection {n}",
                        if matches!(selector, Selector::Ttl(_)) {
                            "ttl"
                        } else {
                            "writeTime"
                        }
                    )));
                }
                if matches!(selector, Selector::Ttl(_)) {
                    (format!("ttl({n})"), CqlType::Int)
                } else {
                    (format!("writetime({n})"), CqlType::Bigint)
                }
            }
            Selector::Token(cols) => {
                let names: Vec<&str> = t.partition_key.iter().map(|c| c.name.as_str()).collect();
                if cols.iter().map(String::as_str).collect::<Vec<_>>() != names {
                    return Err(CqlError::Invalid(format!(
                        "Type error: token() takes the partition key columns in order ({})",
                        names.join(", ")
                    )));
                }
                (
                    format!("system.token({})", cols.join(", ")),
                    CqlType::Bigint,
                )
            }
        };
        out.push(spec(alias.as_deref().unwrap_or(&name), ty));
    }
    Ok(out)
}

/// A key range to read: `[start, end)` (an empty end: to the table's end).
#[derive(Debug, Clone)]
struct Range {
    start: Vec<u8>,
    end: Vec<u8>,
}

/// What a SELECT's WHERE clause resolved to.
struct Plan {
    ranges: Vec<Range>,
    /// Relations checked on every assembled row (all of them: ranges only
    /// narrow what is read).
    filters: Vec<Filter>,
    /// The partition key was restricted by = or IN.
    keyed: bool,
    multi_partition_in: bool,
}

/// One relation with its values resolved.
enum Filter {
    Column {
        col: Col,
        op: Op,
        values: Vec<Vec<u8>>,
    },
    Token {
        op: Op,
        value: i64,
    },
}

/// Runs a SELECT.
pub async fn select(
    node: &Node,
    keyspace: &Option<String>,
    s: &Statement,
    binds: &Binds<'_>,
    params: &Params,
) -> Result<Outcome, CqlError> {
    let Statement::Select {
        table,
        distinct,
        selection,
        wheres,
        order,
        limit,
        per_partition_limit,
        allow_filtering,
    } = s
    else {
        return Err(CqlError::Invalid("not a SELECT".into()));
    };
    let t = node.table(keyspace, table)?;
    node.read_check(params.consistency, &t.keyspace)?;
    let columns = result_columns(&t, s)?;
    let limit = positive(node, limit, binds, "LIMIT")?;
    let per_partition = positive(node, per_partition_limit, binds, "PER PARTITION LIMIT")?;
    let plan = plan(node, &t, wheres, binds, *allow_filtering)?;
    let reverse = order_by(&t, order, &plan)?;
    let aggregate = selection
        .as_ref()
        .is_some_and(|sel| sel.iter().any(|x| x.selector == Selector::CountAll));
    if *distinct
        && !t.clustering.is_empty()
        && plan.filters.iter().any(
            |f| matches!(f, Filter::Column { col, .. } if col.kind != ColumnKind::PartitionKey),
        )
    {
        return Err(CqlError::Invalid(
            "SELECT DISTINCT with WHERE clause only supports restriction by partition key and/or static columns.".into(),
        ));
    }
    if matches!(
        params.consistency,
        Consistency::Serial | Consistency::LocalSerial
    ) && !crate::system::is_system_keyspace(&t.keyspace)
    {
        serial_read_barrier(node, &plan.ranges, params.consistency).await?;
    }
    let sort_in_memory = !order.is_empty() && plan.multi_partition_in;
    let page_size = params
        .page_size
        .filter(|p| *p > 0 && !aggregate)
        .map(|p| p as usize);
    if sort_in_memory && page_size.is_some() {
        return Err(CqlError::Invalid("Cannot page queries with both ORDER BY and a IN restriction on the partition key; you must either remove the ORDER BY or the IN and sort client side, or disable paging for this query".into()));
    }
    let resume = match &params.paging_state {
        Some(p) => Some(PagingState::decode(p)?),
        None => None,
    };
    let now = node.hlc.now() / 1_000_000;
    let mut state = resume.clone().unwrap_or(PagingState {
        after: Vec::new(),
        emitted: 0,
        partition: Vec::new(),
        in_partition: 0,
    });
    let want = |emitted: usize| -> bool { limit.is_none_or(|l| emitted < l) };
    let mut out: Vec<Row> = Vec::new();
    let mut more = false;
    let mut last_distinct: Vec<u8> = Vec::new();
    let mut accept = |row: Row, state: &mut PagingState, out: &mut Vec<Row>| -> Option<bool> {
        // Some(true): take more; Some(false): the page or the limit is full.
        if !want(state.emitted) {
            return Some(false);
        }
        if !matches(&t, &row, &plan.filters) {
            return Some(true);
        }
        if row.partition != state.partition {
            state.partition = row.partition.clone();
            state.in_partition = 0;
        }
        if *distinct {
            if row.partition == last_distinct {
                return Some(true);
            }
            last_distinct = row.partition.clone();
        }
        if per_partition.is_some_and(|p| state.in_partition >= p) {
            return Some(true);
        }
        state.in_partition += 1;
        state.emitted += 1;
        state.after = row.key.clone();
        out.push(row);
        if page_size.is_some_and(|p| out.len() >= p) {
            return Some(false);
        }
        Some(true)
    };
    if crate::system::is_system_keyspace(&t.keyspace) {
        let mut rows = crate::system::rows(node, &t);
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        for row in rows {
            if !state.after.is_empty() && row.key <= state.after {
                continue;
            }
            if accept(row, &mut state, &mut out) == Some(false) {
                more = true;
                break;
            }
        }
    } else if reverse || sort_in_memory {
        let mut rows = Vec::new();
        for r in &plan.ranges {
            read_range(node, &t, r, now, params.consistency, &mut |row| {
                rows.push(row);
                true
            })
            .await?;
        }
        if sort_in_memory {
            rows.sort_by(|a, b| a.key[a.partition.len()..].cmp(&b.key[b.partition.len()..]));
        }
        if reverse {
            rows.reverse();
        }
        for row in rows {
            if !state.after.is_empty() {
                let skip = if reverse {
                    row.key >= state.after
                } else {
                    row.key <= state.after
                };
                if skip {
                    continue;
                }
            }
            if accept(row, &mut state, &mut out) == Some(false) {
                more = true;
                break;
            }
        }
    } else {
        for r in &plan.ranges {
            let mut r = r.clone();
            if !state.after.is_empty() {
                let from = cell::prefix_end(&state.after);
                if !r.end.is_empty() && from >= r.end {
                    continue;
                }
                if from > r.start {
                    r.start = from;
                }
            }
            let mut full = false;
            read_range(node, &t, &r, now, params.consistency, &mut |row| {
                if accept(row, &mut state, &mut out) == Some(false) {
                    full = true;
                    return false;
                }
                true
            })
            .await?;
            if full {
                more = true;
                break;
            }
        }
    }
    // A full page (not the limit) may have more behind it.
    let paging_state = (more && want(state.emitted) && page_size.is_some()).then(|| state.encode());
    let rows = if aggregate {
        vec![project(
            &t,
            selection.as_deref(),
            out.first(),
            Some(out.len() as i64),
        )]
    } else {
        out.iter()
            .map(|r| project(&t, selection.as_deref(), Some(r), None))
            .collect()
    };
    Ok(Outcome::Rows(Rows {
        columns,
        rows,
        paging_state,
    }))
}

/// One output row: the selected values of `row` (None: every column null),
/// with `count` for count(*).
fn project(
    t: &TableSchema,
    sel: Option<&[Selection]>,
    row: Option<&Row>,
    count: Option<i64>,
) -> Vec<Option<Vec<u8>>> {
    let Some(sel) = sel else {
        return t.all().map(|c| row.and_then(|r| r.value(t, c))).collect();
    };
    sel.iter()
        .map(|s| match &s.selector {
            Selector::CountAll => Some(count.unwrap_or(0).to_be_bytes().to_vec()),
            Selector::Column(n) => {
                let c = t.column(n).ok()?;
                row.and_then(|r| r.value(t, c))
            }
            Selector::WriteTime(n) => {
                let c = t.column(n).ok()?;
                row.and_then(|r| r.cells.get(&c.id))
                    .map(|x| x.ts.to_be_bytes().to_vec())
            }
            Selector::Ttl(n) => {
                let c = t.column(n).ok()?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                row.and_then(|r| r.cells.get(&c.id))
                    .filter(|x| x.kind == CellKind::Expiring)
                    .map(|x| ((x.ldt as i64 - now).max(0) as i32).to_be_bytes().to_vec())
            }
            Selector::Token(_) => row.map(|r| r.token.to_be_bytes().to_vec()),
        })
        .collect()
}

fn positive(
    node: &Node,
    term: &Option<Term>,
    binds: &Binds<'_>,
    what: &str,
) -> Result<Option<usize>, CqlError> {
    let Some(term) = term else {
        return Ok(None);
    };
    match node.term_value(term, &CqlType::Int, binds)? {
        None => Ok(None),
        Some(None) => Err(CqlError::Invalid(format!(
            "Invalid null value of {}",
            what.to_lowercase()
        ))),
        Some(Some(b)) => {
            let n = i32::from_be_bytes(
                b.try_into()
                    .map_err(|_| CqlError::Invalid(format!("bad {what}")))?,
            );
            if n <= 0 {
                return Err(CqlError::Invalid(format!(
                    "{what} must be strictly positive"
                )));
            }
            Ok(Some(n as usize))
        }
    }
}

/// Works out the ranges to read and checks the WHERE clause against
/// Cassandra's rules.
fn plan(
    node: &Node,
    t: &TableSchema,
    wheres: &[Relation],
    binds: &Binds<'_>,
    allow_filtering: bool,
) -> Result<Plan, CqlError> {
    let mut filters = Vec::new();
    let mut needs_filtering = false;
    let rel_of = |c: &Col| -> Vec<&Relation> {
        wheres
            .iter()
            .filter(|r| matches!(&r.lhs, Lhs::Column(n) if *n == c.name))
            .collect()
    };
    for r in wheres {
        if r.op == Op::Ne {
            return Err(CqlError::Invalid("Unsupported \"!=\" relation".into()));
        }
        match &r.lhs {
            Lhs::Column(n) => {
                let c = t.column(n)?.clone();
                if wheres
                    .iter()
                    .filter(|x| x.lhs == r.lhs && (x.op == Op::Eq || r.op == Op::Eq))
                    .count()
                    > 1
                {
                    return Err(CqlError::Invalid(format!("{n} cannot be restricted by more than one relation if it includes an Equal")));
                }
                let values = match r.op {
                    Op::Eq | Op::In => node.relation_values(r, &c, binds)?,
                    Op::Contains | Op::ContainsKey => {
                        let elem_ty = match (c.ty.unfrozen(), r.op) {
                            (CqlType::List(e) | CqlType::Set(e), Op::Contains) => (**e).clone(),
                            (CqlType::Map(_, v), Op::Contains) => (**v).clone(),
                            (CqlType::Map(k, _), Op::ContainsKey) => (**k).clone(),
                            _ => {
                                return Err(CqlError::Invalid(format!(
                                    "Cannot use {} on non-collection column {n}",
                                    if r.op == Op::Contains {
                                        "CONTAINS"
                                    } else {
                                        "CONTAINS KEY"
                                    }
                                )))
                            }
                        };
                        vec![value(node, &r.rhs[0], &elem_ty, binds, n)?]
                    }
                    _ => {
                        if !c.ty.orderable() {
                            return Err(CqlError::Invalid(format!(
                                "Slice restrictions are not supported on column {n} of type {}",
                                c.ty
                            )));
                        }
                        vec![value(node, &r.rhs[0], &c.ty, binds, n)?]
                    }
                };
                filters.push(Filter::Column {
                    col: c,
                    op: r.op,
                    values,
                });
            }
            Lhs::Token(cols) => {
                let names: Vec<&str> = t.partition_key.iter().map(|c| c.name.as_str()).collect();
                if cols.iter().map(String::as_str).collect::<Vec<_>>() != names {
                    return Err(CqlError::Invalid(format!(
                        "The token() function must be applied to all partition key components or none of them ({})",
                        names.join(", ")
                    )));
                }
                if r.op == Op::In || r.op == Op::Contains || r.op == Op::ContainsKey {
                    return Err(CqlError::Invalid(
                        "token() supports only =, <, <=, > and >=".into(),
                    ));
                }
                let v = value(
                    node,
                    &r.rhs[0],
                    &CqlType::Bigint,
                    binds,
                    "partition key token",
                )?;
                let v = i64::from_be_bytes(
                    v.try_into()
                        .map_err(|_| CqlError::Invalid("bad token".into()))?,
                );
                filters.push(Filter::Token { op: r.op, value: v });
            }
        }
    }
    // The partition key: all by = / IN, or none (a scan, perhaps by token).
    let pk_rels: Vec<Option<&Relation>> = t
        .partition_key
        .iter()
        .map(|c| rel_of(c).first().copied())
        .collect();
    let keyed = pk_rels
        .iter()
        .all(|r| r.is_some_and(|r| matches!(r.op, Op::Eq | Op::In)));
    let has_token = filters.iter().any(|f| matches!(f, Filter::Token { .. }));
    if keyed && has_token {
        return Err(CqlError::Invalid("Columns of the partition key cannot be restricted both by the token() function and directly".into()));
    }
    if !keyed && pk_rels.iter().any(|r| r.is_some()) {
        needs_filtering = true;
    }
    // Clustering: an = / IN prefix, then at most one slice.
    let mut prefix: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut slice: Option<(&Col, Bounds)> = None;
    let mut stopped: Option<(&Col, bool)> = None;
    for c in &t.clustering {
        let rels: Vec<&Relation> = rel_of(c);
        if rels.is_empty() {
            if stopped.is_none() {
                stopped = Some((c, false));
            }
            continue;
        }
        if let Some((prev, restricted)) = stopped {
            if allow_filtering {
                needs_filtering = true;
                continue;
            }
            return Err(CqlError::Invalid(if restricted {
                format!("Clustering column \"{}\" cannot be restricted (preceding column \"{}\" is restricted by a non-EQ relation)", c.name, prev.name)
            } else {
                format!("PRIMARY KEY column \"{}\" cannot be restricted as preceding column \"{}\" is not restricted", c.name, prev.name)
            }));
        }
        if rels
            .iter()
            .any(|r| matches!(r.op, Op::Contains | Op::ContainsKey))
        {
            needs_filtering = true;
            stopped = Some((c, true));
            continue;
        }
        if rels.len() == 1 && matches!(rels[0].op, Op::Eq | Op::In) {
            prefix.push(node.relation_values(rels[0], c, binds)?);
            continue;
        }
        let mut bounds = Vec::new();
        for r in rels {
            bounds.push((r.op, value(node, &r.rhs[0], &c.ty, binds, &c.name)?));
        }
        slice = Some((c, bounds));
        stopped = Some((c, true));
    }
    let clustering_restricted = !prefix.is_empty() || slice.is_some();
    if clustering_restricted && !keyed {
        needs_filtering = true;
    }
    if filters
        .iter()
        .any(|f| matches!(f, Filter::Column { col, .. } if col.kind == ColumnKind::Regular))
    {
        needs_filtering = true;
    }
    if needs_filtering && !allow_filtering {
        return Err(CqlError::Invalid(NEEDS_FILTERING.into()));
    }
    // The ranges.
    let mut ranges = Vec::new();
    let mut multi_partition_in = false;
    if keyed {
        let pks = node.key_values(t, wheres, binds, &t.partition_key, true)?;
        multi_partition_in = pks.len() > 1;
        let mut prefixes: Vec<Vec<u8>> = pks
            .iter()
            .map(|pk| t.partition_prefix(&t.partition_bytes(pk)))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        // Clustering combinations of the = / IN prefix.
        let mut combos: Vec<Vec<u8>> = vec![Vec::new()];
        for (i, vals) in prefix.iter().enumerate() {
            let c = &t.clustering[i];
            let mut next = Vec::new();
            for combo in &combos {
                for v in vals {
                    let mut x = combo.clone();
                    crate::table::push_clustering(c, v, &mut x);
                    next.push(x);
                }
            }
            combos = next;
            if combos.len() * prefixes.len() > 65_535 {
                return Err(CqlError::Invalid(
                    "too many key combinations in IN restrictions".into(),
                ));
            }
        }
        combos.sort();
        for p in &prefixes {
            for combo in &combos {
                let base = cell::row_prefix(p, combo);
                // A range from the partition's first row starts at the
                // partition itself, so the one read brings its deletion too
                // (read_range reads it apart for a range starting inside).
                let first = if combo.is_empty() {
                    p.clone()
                } else {
                    base.clone()
                };
                let (mut start, mut end) = (first, cell::prefix_end(&base));
                if let Some((c, bounds)) = &slice {
                    // Loose bounds: the slice's values themselves are let in
                    // and the filters make them exact.
                    for (op, v) in bounds {
                        let mut k = base.clone();
                        crate::table::push_clustering(c, v, &mut k);
                        let lower = matches!(op, Op::Gt | Op::Ge) != c.reversed;
                        if lower {
                            if k > start {
                                start = k;
                            }
                        } else {
                            let e = cell::prefix_end(&k);
                            if e < end {
                                end = e;
                            }
                        }
                    }
                }
                if start < end {
                    ranges.push(Range { start, end });
                }
            }
        }
    } else {
        let mut lo = t.id.to_vec();
        let mut hi = cell::prefix_end(&t.id);
        for f in &filters {
            if let Filter::Token { op, value } = f {
                let at = |tok: i64| -> Vec<u8> {
                    let mut k = t.id.to_vec();
                    k.extend_from_slice(&cell::token_key(tok));
                    k
                };
                let after = |tok: i64| {
                    if tok == i64::MAX {
                        cell::prefix_end(&t.id)
                    } else {
                        at(tok + 1)
                    }
                };
                match op {
                    Op::Gt => lo = lo.max(after(*value)),
                    Op::Ge => lo = lo.max(at(*value)),
                    Op::Eq => {
                        lo = lo.max(at(*value));
                        hi = hi.min(after(*value));
                    }
                    Op::Lt => hi = hi.min(at(*value)),
                    Op::Le => hi = hi.min(after(*value)),
                    _ => {}
                }
            }
        }
        if lo < hi {
            ranges.push(Range { start: lo, end: hi });
        }
    }
    Ok(Plan {
        ranges,
        filters,
        keyed,
        multi_partition_in,
    })
}

fn value(
    node: &Node,
    term: &Term,
    ty: &CqlType,
    binds: &Binds<'_>,
    name: &str,
) -> Result<Vec<u8>, CqlError> {
    match node.term_value(term, ty, binds)? {
        Some(Some(v)) => Ok(v),
        None => Err(CqlError::Invalid(format!(
            "Invalid unset value for column {name}"
        ))),
        Some(None) => Err(CqlError::Invalid(format!(
            "Invalid null value in condition for column {name}"
        ))),
    }
}

/// Whether ORDER BY reverses the clustering order; checks it as Cassandra.
fn order_by(t: &TableSchema, order: &[(String, bool)], plan: &Plan) -> Result<bool, CqlError> {
    if order.is_empty() {
        return Ok(false);
    }
    if !plan.keyed {
        return Err(CqlError::Invalid(
            "ORDER BY is only supported when the partition key is restricted by an EQ or an IN."
                .into(),
        ));
    }
    let mut reverse = None;
    for (i, (name, desc)) in order.iter().enumerate() {
        let c = t.column(name)?;
        if c.kind != ColumnKind::Clustering {
            return Err(CqlError::Invalid(format!("Order by is currently only supported on the clustered columns of the PRIMARY KEY, got {name}")));
        }
        if t.clustering.get(i).map(|x| x.id) != Some(c.id) {
            return Err(CqlError::Invalid("Order by currently only supports the ordering of columns following their declared order in the PRIMARY KEY".into()));
        }
        let r = *desc != c.reversed;
        if reverse.is_some_and(|x| x != r) {
            return Err(CqlError::Invalid("Unsupported order by relation".into()));
        }
        reverse = Some(r);
    }
    Ok(reverse.unwrap_or(false))
}

fn matches(t: &TableSchema, row: &Row, filters: &[Filter]) -> bool {
    filters.iter().all(|f| match f {
        Filter::Token { op, value } => cmp_op(*op, row.token.cmp(value)),
        Filter::Column { col, op, values } => {
            let Some(v) = row.value(t, col) else {
                return false;
            };
            match op {
                Op::Eq | Op::In => values.contains(&v),
                Op::Contains | Op::ContainsKey => {
                    let per = if matches!(col.ty.unfrozen(), CqlType::Map(..)) {
                        2
                    } else {
                        1
                    };
                    let at = if *op == Op::Contains { per - 1 } else { 0 };
                    types::elements(&v, per)
                        .map(|items| items.iter().any(|i| i[at] == Some(values[0].as_slice())))
                        .unwrap_or(false)
                }
                _ => cmp_op(
                    *op,
                    types::order_key(&col.ty, &v).cmp(&types::order_key(&col.ty, &values[0])),
                ),
            }
        }
    })
}

fn cmp_op(op: Op, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => o == Equal,
        Op::Lt => o == Less,
        Op::Le => o != Greater,
        Op::Gt => o == Greater,
        Op::Ge => o != Less,
        _ => false,
    }
}

/// Reads the live rows of one key range at `cl`, in key order, handing each
/// to `f` until it returns false. The coordinator reads the range from its
/// replicas chunk by chunk; the rows are assembled here.
async fn read_range(
    node: &Node,
    t: &TableSchema,
    r: &Range,
    now: i64,
    cl: Consistency,
    f: &mut (dyn FnMut(Row) -> bool + Send),
) -> Result<(), CqlError> {
    let hint =
        partition_of(&r.start).filter(|p| r.end.starts_with(p) || cell::prefix_end(p) == r.end);
    let mut asm = Assembler::default();
    let mut start = r.start.clone();
    let mut chunk = crate::coordinator::FIRST_CHUNK;
    loop {
        let (cells, resume) = node
            .read_cells(&start, &r.end, hint.as_deref(), cl, chunk)
            .await?;
        chunk = chunk.saturating_mul(4).min(crate::coordinator::CHUNK_MAX);
        for (k, c) in cells {
            let Some(parts) = cell::split_key(&k) else {
                continue;
            };
            let plen = k.len() - parts.clustering.len() - 5;
            if k[..plen] != asm.partition[..] {
                if let Some(row) = asm.finish(t, now) {
                    if !f(row) {
                        return Ok(());
                    }
                }
                asm.partition = k[..plen].to_vec();
                asm.pk = t.split_partition(parts.pk);
                asm.token = parts.token;
                // A range that starts inside the partition has not seen its deletion.
                asm.partition_del = if r.start.as_slice() > asm.partition.as_slice() {
                    partition_deletion(node, &asm.partition, cl).await?
                } else {
                    i64::MIN
                };
            }
            if parts.kind == cell::KIND_PARTITION {
                if c.kind == CellKind::Tombstone {
                    asm.partition_del = asm.partition_del.max(c.ts);
                }
                continue;
            }
            let rlen = k.len() - 4;
            if k[..rlen] != asm.row[..] {
                if let Some(row) = asm.finish(t, now) {
                    if !f(row) {
                        return Ok(());
                    }
                }
                asm.row = k[..rlen].to_vec();
                asm.ck = parts.clustering.to_vec();
            }
            asm.cells.push((parts.column, c));
        }
        match resume {
            Some(next) if r.end.is_empty() || next < r.end => start = next,
            _ => break,
        }
    }
    if let Some(row) = asm.finish(t, now) {
        f(row);
    }
    Ok(())
}

/// The partition prefix at the start of a key (None if it has none).
fn partition_of(key: &[u8]) -> Option<Vec<u8>> {
    cell::partition_prefix_len(key).map(|n| key[..n].to_vec())
}

/// The timestamp of a partition's deletion (i64::MIN: none).
async fn partition_deletion(
    node: &Node,
    partition: &[u8],
    cl: Consistency,
) -> Result<i64, CqlError> {
    let k = cell::partition_deletion_key(partition);
    let mut end = k.clone();
    end.push(0);
    let (cells, _) = node
        .read_cells(
            &k,
            &end,
            Some(partition),
            cl,
            crate::coordinator::FIRST_CHUNK,
        )
        .await?;
    Ok(cells
        .iter()
        .filter(|(_, c)| c.kind == CellKind::Tombstone)
        .map(|(_, c)| c.ts)
        .max()
        .unwrap_or(i64::MIN))
}

/// Gathers one row's cells.
#[derive(Default)]
struct Assembler {
    partition: Vec<u8>,
    pk: Vec<Vec<u8>>,
    token: i64,
    partition_del: i64,
    row: Vec<u8>,
    ck: Vec<u8>,
    cells: Vec<(u32, Cell)>,
}

impl Assembler {
    /// The row gathered so far, if it is live; starts a new one.
    fn finish(&mut self, t: &TableSchema, now: i64) -> Option<Row> {
        let cells = std::mem::take(&mut self.cells);
        if cells.is_empty() {
            return None;
        }
        let mut deleted = self.partition_del;
        for (col, c) in &cells {
            if *col == cell::ROW_DELETION && c.kind == CellKind::Tombstone {
                deleted = deleted.max(c.ts);
            }
        }
        let mut live = false;
        let mut out = HashMap::new();
        for (col, c) in cells {
            if col == cell::ROW_DELETION || c.ts <= deleted || !c.is_live(now) {
                continue;
            }
            live = true;
            if col != cell::ROW_MARKER && t.regular_by_id(col).is_some() {
                out.insert(col, c);
            }
        }
        if !live {
            return None;
        }
        // Only the marker of a dropped column left: still a row (as Cassandra).
        Some(Row {
            key: self.row.clone(),
            token: self.token,
            partition: self.partition.clone(),
            pk: self.pk.clone(),
            ck: t.split_clustering(&self.ck),
            cells: out,
        })
    }
}

/// Where a paged query resumes.
#[derive(Debug, Clone)]
struct PagingState {
    /// The last row returned (its key).
    after: Vec<u8>,
    /// Rows returned so far (for LIMIT).
    emitted: usize,
    /// The partition of the last row and its rows so far (for PER PARTITION LIMIT).
    partition: Vec<u8>,
    in_partition: usize,
}

impl PagingState {
    fn encode(&self) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend_from_slice(&(self.emitted as u64).to_be_bytes());
        b.extend_from_slice(&(self.in_partition as u64).to_be_bytes());
        b.extend_from_slice(&(self.partition.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.partition);
        b.extend_from_slice(&self.after);
        b
    }

    fn decode(b: &[u8]) -> Result<PagingState, CqlError> {
        let bad = || CqlError::Protocol("Invalid value for the paging state".into());
        if b.len() < 21 || b[0] != 1 {
            return Err(bad());
        }
        let emitted = u64::from_be_bytes(b[1..9].try_into().map_err(|_| bad())?) as usize;
        let in_partition = u64::from_be_bytes(b[9..17].try_into().map_err(|_| bad())?) as usize;
        let plen = u32::from_be_bytes(b[17..21].try_into().map_err(|_| bad())?) as usize;
        let rest = &b[21..];
        if plen > rest.len() {
            return Err(bad());
        }
        Ok(PagingState {
            emitted,
            in_partition,
            partition: rest[..plen].to_vec(),
            after: rest[plen..].to_vec(),
        })
    }
}

/// Reads one row by its full primary key (for conditions).
async fn read_row(
    node: &Node,
    t: &TableSchema,
    pk: &[Vec<u8>],
    ck: &[Vec<u8>],
    cl: Consistency,
) -> Result<Option<Row>, CqlError> {
    let prefix = t.partition_prefix(&t.partition_bytes(pk));
    let base = cell::row_prefix(&prefix, &t.clustering_bytes(ck));
    let r = Range {
        end: cell::prefix_end(&base),
        start: base,
    };
    let now = node.hlc.now() / 1_000_000;
    let mut found = None;
    read_range(node, t, &r, now, cl, &mut |row| {
        if row.ck.len() == ck.len() || ck.is_empty() {
            found = Some(row);
            return false;
        }
        true
    })
    .await?;
    Ok(found)
}

/// A read at SERIAL or LOCAL_SERIAL first runs a Paxos prepare on its
/// partition, which finishes any conditional write in flight there, so the
/// quorum read after it sees every write a serial operation could have seen
/// (Cassandra's `readWithPaxos`). One partition only, as Cassandra.
async fn serial_read_barrier(
    node: &Node,
    ranges: &[Range],
    cl: Consistency,
) -> Result<(), CqlError> {
    let one = |r: &Range| {
        let p = cell::partition_prefix_len(&r.start)?;
        let part = &r.start[..p];
        (r.end.starts_with(part) || r.end == cell::prefix_end(part)).then(|| part.to_vec())
    };
    let mut partition: Option<Vec<u8>> = None;
    for r in ranges {
        match (one(r), &partition) {
            (Some(p), None) => partition = Some(p),
            (Some(p), Some(q)) if p == *q => {}
            _ => return Err(CqlError::Invalid(
                "SERIAL/LOCAL_SERIAL consistency may only be requested for one partition at a time"
                    .into(),
            )),
        }
    }
    let Some(partition) = partition else {
        return Ok(());
    };
    let deadline = tokio::time::Instant::now() + crate::paxos::CAS_CONTENTION_TIMEOUT;
    node.paxos_begin(&partition, cl, deadline)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            // Cassandra answers a serial read that could not finish its
            // round with ReadTimeout.
            CqlError::WriteTimeout {
                cl,
                received,
                block_for,
                ..
            } => CqlError::ReadTimeout {
                cl,
                received,
                block_for,
                data_present: false,
            },
            e => e,
        })
}

/// A conditional write (lightweight transaction): Paxos rounds on the
/// partition ([`crate::paxos`]) read the row at (local) quorum, evaluate the
/// condition and, if it holds, propose and commit the write. Answers
/// `[applied]` and, when not applied, the values the condition saw.
#[allow(clippy::too_many_arguments)]
pub async fn compare_and_set(
    node: &Node,
    t: &TableSchema,
    s: &Statement,
    condition: &Condition,
    binds: &Binds<'_>,
    params: &Params,
    m: Mutation,
) -> Result<Outcome, CqlError> {
    let serial = params.serial_consistency.unwrap_or(Consistency::Serial);
    if !matches!(serial, Consistency::Serial | Consistency::LocalSerial) {
        return Err(CqlError::Invalid(format!(
            "Invalid consistency for conditional update: {}, serial consistency levels are SERIAL and LOCAL_SERIAL", crate::error::cl_name(serial)
        )));
    }
    if matches!(
        params.consistency,
        Consistency::Serial | Consistency::LocalSerial
    ) {
        return Err(CqlError::Invalid("SERIAL is not supported as conditional update commit consistency. Use ANY if you mean \"make sure it is accepted but I don't care how many replicas commit it for non-SERIAL reads\"".into()));
    }
    node.read_check(serial, &t.keyspace)?;
    let (pk, ck, using_ts) = match s {
        Statement::Insert {
            columns,
            values,
            using,
            ..
        } => {
            let get = |c: &Col| -> Result<Vec<u8>, CqlError> {
                let i = columns.iter().position(|n| *n == c.name).ok_or_else(|| {
                    CqlError::Invalid(format!("Some partition key parts are missing: {}", c.name))
                })?;
                value(node, &values[i], &c.ty, binds, &c.name)
            };
            (
                t.partition_key
                    .iter()
                    .map(get)
                    .collect::<Result<Vec<_>, _>>()?,
                t.clustering
                    .iter()
                    .map(get)
                    .collect::<Result<Vec<_>, _>>()?,
                using.timestamp.is_some(),
            )
        }
        Statement::Update { wheres, using, .. } | Statement::Delete { wheres, using, .. } => {
            let pks = node.key_values(t, wheres, binds, &t.partition_key, true)?;
            let cks = node.key_values(t, wheres, binds, &t.clustering, false)?;
            if pks.len() != 1 || cks.len() != 1 {
                return Err(CqlError::Invalid(
                    "IN on the partition key is not supported with conditional updates".into(),
                ));
            }
            if cks[0].len() != t.clustering.len() {
                return Err(CqlError::Invalid("DELETE statements must restrict all PRIMARY KEY columns with equality relations in order to use IF conditions".into()));
            }
            (pks[0].clone(), cks[0].clone(), using.timestamp.is_some())
        }
        _ => return Err(CqlError::Invalid("not a conditional write".into())),
    };
    if using_ts {
        return Err(CqlError::Invalid(
            "Cannot provide custom timestamp for conditional updates".into(),
        ));
    }
    let partition = t.partition_prefix(&t.partition_bytes(&pk));
    // One round at a time from this node per partition (its own statements
    // would only pre-empt each other's ballots); Paxos orders them across
    // coordinators.
    let _guard = node.lwt_lock(&partition).lock().await;
    node.cas(&partition, serial, params.consistency, || async {
        // At (local) quorum: SERIAL's and LOCAL_SERIAL's levels count so.
        let current = read_row(node, t, &pk, &ck, serial).await?;
        let (applied, columns, row) = evaluate(node, t, condition, binds, &current)?;
        let cells = applied.then(|| m.clone());
        Ok((
            cells,
            Outcome::Rows(Rows {
                columns,
                rows: vec![row],
                paging_state: None,
            }),
        ))
    })
    .await
}

/// One result row's values.
type RowValues = Vec<Option<Vec<u8>>>;

/// Whether `condition` holds on `current`: `[applied]`, and (not applied)
/// the values it saw, as Cassandra answers.
fn evaluate(
    node: &Node,
    t: &TableSchema,
    condition: &Condition,
    binds: &Binds<'_>,
    current: &Option<Row>,
) -> Result<(bool, Vec<ColumnSpec>, RowValues), CqlError> {
    let bool_col = |applied: bool| Some(vec![applied as u8]);
    let applied_spec = ColumnSpec {
        keyspace: t.keyspace.clone(),
        table: t.name.clone(),
        name: "[applied]".into(),
        ty: CqlType::Boolean,
    };
    let spec = |c: &Col| ColumnSpec {
        keyspace: t.keyspace.clone(),
        table: t.name.clone(),
        name: c.name.clone(),
        ty: c.ty.clone(),
    };
    let (applied, mut columns, mut row) = match condition {
        Condition::IfNotExists => match &current {
            None => (true, vec![applied_spec.clone()], vec![bool_col(true)]),
            Some(r) => {
                let mut cols = vec![applied_spec.clone()];
                let mut vals = vec![bool_col(false)];
                for c in t.all() {
                    cols.push(spec(c));
                    vals.push(r.value(t, c));
                }
                (false, cols, vals)
            }
        },
        Condition::IfExists => (
            current.is_some(),
            vec![applied_spec.clone()],
            vec![bool_col(current.is_some())],
        ),
        Condition::Columns(conds) => {
            let mut ok = true;
            let mut cols = vec![applied_spec.clone()];
            let mut vals = vec![None];
            for (name, op, term) in conds {
                let c = t.column(name)?;
                if c.kind != ColumnKind::Regular {
                    return Err(CqlError::Invalid(format!(
                        "PRIMARY KEY column '{name}' cannot have IF conditions"
                    )));
                }
                let have = current.as_ref().and_then(|r| r.value(t, c));
                let want = node.term_value(term, &c.ty, binds)?.flatten();
                let holds = match (op, &have, &want) {
                    (Op::Eq, h, w) => h == w,
                    (Op::Ne, h, w) => h != w,
                    (_, Some(h), Some(w)) if c.ty.orderable() => cmp_op(
                        *op,
                        types::order_key(&c.ty, h).cmp(&types::order_key(&c.ty, w)),
                    ),
                    (Op::In, _, _) | (Op::Contains, _, _) | (Op::ContainsKey, _, _) => {
                        return Err(CqlError::Invalid(format!(
                            "Unsupported operator in IF condition on {name}"
                        )))
                    }
                    _ => false,
                };
                ok &= holds;
                if !cols.iter().any(|x| x.name == c.name) {
                    cols.push(spec(c));
                    vals.push(have);
                }
            }
            vals[0] = bool_col(ok);
            (ok, cols, vals)
        }
        Condition::None => (true, vec![applied_spec.clone()], vec![bool_col(true)]),
    };
    if applied {
        columns.truncate(1);
        row.truncate(1);
    }
    Ok((applied, columns, row))
}
