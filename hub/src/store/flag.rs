//! [`Flag`]: a boolean column read the same way on both backends. Through sqlx's `Any`
//! driver PostgreSQL hands a BOOLEAN back as a boolean and SQLite as an integer (0/1), and
//! `bool` alone decodes only the first; a comparison (`state = 'closed' AS terminal`) comes
//! back the same two ways.

use sqlx::ValueRef as _;
use sqlx::any::{Any, AnyTypeInfo, AnyTypeInfoKind};
use sqlx::decode::Decode;
use sqlx::encode::{Encode, IsNull};
use sqlx::error::BoxDynError;
use sqlx::types::Type;

/// A boolean as stored: read with `#[sqlx(try_from = "Flag")]` into a `bool` field, or as a
/// column of a tuple and then `.into()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flag(pub bool);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0
    }
}

impl Type<Any> for Flag {
    fn type_info() -> AnyTypeInfo {
        <bool as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        matches!(
            ty.kind(),
            AnyTypeInfoKind::Bool | AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt
        )
    }
}

impl<'r> Decode<'r, Any> for Flag {
    fn decode(value: <Any as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        match value.type_info().kind() {
            AnyTypeInfoKind::Bool => <bool as Decode<Any>>::decode(value).map(Flag),
            _ => <i64 as Decode<Any>>::decode(value).map(|i| Flag(i != 0)),
        }
    }
}

impl Encode<'_, Any> for Flag {
    fn encode_by_ref(&self, buf: &mut <Any as sqlx::Database>::ArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <bool as Encode<Any>>::encode_by_ref(&self.0, buf)
    }
}
