//! Pure read planning: which requests read a device's points.
//!
//! Points are grouped by table, sorted by address and merged into one request where they
//! are adjacent or overlap, up to the protocol's limits. Gaps are bridged only up to
//! `max_gap` registers or bits: the poller uses [`DEFAULT_MAX_GAP`] = 0, because many
//! devices have sparse maps and answer a read that touches an unmapped register with an
//! IllegalDataAddress exception, which would turn every point of the request BAD.

use super::config::{PointConfig, Table};

/// Most registers in one read (a 253-byte PDU).
pub const MAX_REGISTERS: u16 = 125;
/// Most coils or discrete inputs in one read.
pub const MAX_BITS: u16 = 2000;
/// Gap bridged by the poller: none (see the module documentation).
pub const DEFAULT_MAX_GAP: u16 = 0;

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// Indexes into the device's point list.
    pub points: Vec<usize>,
}

impl ReadRequest {
    /// Offset of `address` inside the reply.
    pub fn offset_of(&self, address: u16) -> usize {
        usize::from(address.saturating_sub(self.start))
    }
}

/// Plans the reads for `points`, bridging gaps of at most `max_gap` registers or bits.
/// The order is stable: holding, input, coil, discrete; ascending addresses in each.
pub fn plan(points: &[PointConfig], max_gap: u16) -> Vec<ReadRequest> {
    let mut out = Vec::new();
    for table in [Table::Holding, Table::Input, Table::Coil, Table::Discrete] {
        let limit = u32::from(if table.is_bit() { MAX_BITS } else { MAX_REGISTERS });
        // (start, end exclusive, index); u32 so a point ending at 65536 does not overflow.
        let mut spans: Vec<(u32, u32, usize)> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.table == table)
            .map(|(i, p)| {
                let width = if table.is_bit() { 1 } else { p.value_type.width() };
                let start = u32::from(p.address);
                (start, start + u32::from(width), i)
            })
            .collect();
        spans.sort_unstable();
        let mut current: Option<(u32, u32, Vec<usize>)> = None;
        for (start, end, index) in spans {
            if let Some((s, e, idx)) = current.as_mut() {
                let reachable = start <= *e + u32::from(max_gap);
                let fits = end.max(*e) - *s <= limit;
                if reachable && fits {
                    *e = (*e).max(end);
                    idx.push(index);
                    continue;
                }
            }
            if let Some(done) = current.replace((start, end, vec![index])) {
                out.push(request(table, done));
            }
        }
        if let Some(done) = current {
            out.push(request(table, done));
        }
    }
    out
}

fn request(table: Table, (start, end, points): (u32, u32, Vec<usize>)) -> ReadRequest {
    // Config validation keeps `end` ≤ 65536 and a span ≤ the limit, so these fit in u16;
    // saturate rather than panic if an unvalidated config slips through.
    ReadRequest {
        table,
        start: u16::try_from(start).unwrap_or(u16::MAX),
        count: u16::try_from(end - start).unwrap_or(u16::MAX),
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::modbus::config::{Order, ValueType};

    fn p(name: &str, table: Table, address: u16, ty: ValueType) -> PointConfig {
        PointConfig {
            name: name.into(),
            table,
            address,
            value_type: ty,
            word_order: Order::Big,
            byte_order: Order::Big,
            bit: None,
            scale: 1.0,
            offset: 0.0,
            unit: String::new(),
            deadband: 0.0,
            writable: false,
        }
    }

    fn shape(reqs: &[ReadRequest]) -> Vec<(Table, u16, u16)> {
        reqs.iter().map(|r| (r.table, r.start, r.count)).collect()
    }

    #[test]
    fn adjacent_points_merge_and_tables_stay_apart() {
        let points = vec![
            p("c", Table::Holding, 2, ValueType::F32),
            p("a", Table::Holding, 0, ValueType::U16),
            p("b", Table::Holding, 1, ValueType::U16),
            p("d", Table::Coil, 0, ValueType::Bool),
            p("e", Table::Discrete, 0, ValueType::Bool),
            p("f", Table::Coil, 1, ValueType::Bool),
        ];
        let reqs = plan(&points, 0);
        assert_eq!(
            shape(&reqs),
            vec![(Table::Holding, 0, 4), (Table::Coil, 0, 2), (Table::Discrete, 0, 1)]
        );
        assert_eq!(reqs[0].points, vec![1, 2, 0]);
    }

    #[test]
    fn overlapping_points_share_a_request() {
        let mut bit = p("bit", Table::Holding, 5, ValueType::Bool);
        bit.bit = Some(3);
        let points = vec![
            p("word", Table::Holding, 4, ValueType::U32),
            bit,
            p("w2", Table::Holding, 5, ValueType::U16),
        ];
        let reqs = plan(&points, 0);
        assert_eq!(shape(&reqs), vec![(Table::Holding, 4, 2)]);
        assert_eq!(reqs[0].points.len(), 3);
    }

    #[test]
    fn gaps_split_unless_bridged() {
        let points = vec![
            p("a", Table::Input, 0, ValueType::U16),
            p("b", Table::Input, 5, ValueType::U16),
        ];
        assert_eq!(
            shape(&plan(&points, 0)),
            vec![(Table::Input, 0, 1), (Table::Input, 5, 1)]
        );
        assert_eq!(shape(&plan(&points, 8)), vec![(Table::Input, 0, 6)]);
        assert_eq!(
            shape(&plan(&points, 3)),
            vec![(Table::Input, 0, 1), (Table::Input, 5, 1)]
        );
    }

    #[test]
    fn requests_respect_protocol_limits() {
        let regs: Vec<_> = (0..200)
            .map(|i| p(&format!("r{i}"), Table::Holding, i, ValueType::U16))
            .collect();
        assert_eq!(
            shape(&plan(&regs, 0)),
            vec![(Table::Holding, 0, 125), (Table::Holding, 125, 75)]
        );
        // A 4-word value that would cross the limit starts a new request instead.
        let mut wide: Vec<_> = (0..123)
            .map(|i| p(&format!("r{i}"), Table::Holding, i, ValueType::U16))
            .collect();
        wide.push(p("f64", Table::Holding, 123, ValueType::F64));
        assert_eq!(
            shape(&plan(&wide, 0)),
            vec![(Table::Holding, 0, 123), (Table::Holding, 123, 4)]
        );
        let bits: Vec<_> = (0..2500)
            .map(|i| p(&format!("b{i}"), Table::Coil, i, ValueType::Bool))
            .collect();
        assert_eq!(
            shape(&plan(&bits, 0)),
            vec![(Table::Coil, 0, 2000), (Table::Coil, 2000, 500)]
        );
    }

    #[test]
    fn last_address_does_not_overflow() {
        let points = vec![p("end", Table::Holding, 65_534, ValueType::U32)];
        assert_eq!(shape(&plan(&points, 0)), vec![(Table::Holding, 65_534, 2)]);
        assert!(plan(&[], 0).is_empty());
    }
}
