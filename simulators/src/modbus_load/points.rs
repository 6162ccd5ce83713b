//! The point layout every simulated server serves and the gateway is configured with:
//! half holding registers, a quarter input registers, the rest discrete inputs, adjacent
//! from address 0. Pure.

/// Deadband of the f32 points; their background jitter stays inside it.
pub(super) const F32_DEADBAND: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    U16,
    F32,
    Bit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Holding,
    Input,
    Discrete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PointSpec {
    pub(super) table: Table,
    pub(super) address: u16,
    pub(super) kind: Kind,
}

/// `points` points: half in holding registers, a quarter in input registers, the rest
/// discrete inputs; every third register point an f32 (two registers, big-endian). Each
/// table's points are adjacent from address 0, so the gateway reads each table in one
/// request (up to the protocol's 125 registers).
pub(super) fn layout(points: usize) -> Vec<PointSpec> {
    let holding = points.div_ceil(2);
    let input = points / 4;
    let mut out = Vec::with_capacity(points);
    for (table, n) in [
        (Table::Holding, holding),
        (Table::Input, input),
        (Table::Discrete, points - holding - input),
    ] {
        let mut address = 0u16;
        for i in 0..n {
            let kind = match table {
                Table::Discrete => Kind::Bit,
                _ if i % 3 == 2 => Kind::F32,
                _ => Kind::U16,
            };
            out.push(PointSpec { table, address, kind });
            address += if kind == Kind::F32 { 2 } else { 1 };
        }
    }
    out
}

pub(super) fn point_name(i: usize, p: &PointSpec) -> String {
    let t = match p.table {
        Table::Holding => "hr",
        Table::Input => "ir",
        Table::Discrete => "di",
    };
    format!("{t}{:03}", i)
}

/// Read requests one poll of one device takes: each table's points are adjacent, so one
/// read per table and per 125 registers (2,000 bits).
pub(super) fn requests_per_poll(layout: &[PointSpec]) -> usize {
    let mut n = 0;
    for t in [Table::Holding, Table::Input, Table::Discrete] {
        let width: u32 = layout
            .iter()
            .filter(|p| p.table == t)
            .map(|p| if p.kind == Kind::F32 { 2 } else { 1 })
            .sum();
        let limit = if t == Table::Discrete { 2000 } else { 125 };
        n += width.div_ceil(limit) as usize;
    }
    n
}
