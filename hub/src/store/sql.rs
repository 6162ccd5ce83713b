//! [`Sql`]: a statement built at run time with `$n` placeholders. sqlx's `QueryBuilder` on
//! the `Any` driver writes `?`, which PostgreSQL does not take; this writes `$1, $2, …`,
//! which both backends do.

use std::fmt::Write as _;

use sqlx::Arguments as _;
use sqlx::any::{Any, AnyArguments};
use sqlx::encode::Encode;
use sqlx::error::BoxDynError;
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::types::Type;
use sqlx::{AssertSqlSafe, FromRow};

/// A statement being built: its text and its arguments, numbered as they are pushed.
pub struct Sql {
    text: String,
    args: AnyArguments,
    /// The first encoding error, reported when the statement runs.
    error: Option<String>,
}

impl Sql {
    pub fn new(start: impl Into<String>) -> Self {
        Sql {
            text: start.into(),
            args: AnyArguments::default(),
            error: None,
        }
    }

    /// Appends text as it is (never a value from outside: bind those).
    pub fn push(&mut self, text: impl AsRef<str>) -> &mut Self {
        self.text.push_str(text.as_ref());
        self
    }

    /// Appends the next placeholder and binds `value` to it.
    pub fn push_bind<'t, T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'t, Any> + Type<Any>,
    {
        if let Err(e) = self.args.add(value)
            && self.error.is_none()
        {
            self.error = Some(e.to_string());
        }
        let n = self.args.len();
        let _ = write!(self.text, "${n}");
        self
    }

    /// Appends `VALUES (…), (…)`: one parenthesised group per row, `row` binding its values
    /// through the [`Values`] it is given.
    pub fn push_values<I, F>(&mut self, rows: I, mut row: F) -> &mut Self
    where
        I: IntoIterator,
        F: FnMut(&mut Values<'_>, I::Item),
    {
        self.text.push_str("VALUES ");
        for (i, item) in rows.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            row(&mut Values { sql: self, first: true }, item);
            self.text.push(')');
        }
        self
    }

    /// Appends the values as `$a, $b, …` (an `IN (…)` list; the caller writes the brackets).
    pub fn push_list<'t, T, I>(&mut self, values: I) -> &mut Self
    where
        I: IntoIterator<Item = T>,
        T: Encode<'t, Any> + Type<Any>,
    {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.push_bind(value);
        }
        self
    }

    /// The text so far (tests, tracing).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn finish(self) -> (String, Result<AnyArguments, BoxDynError>) {
        match self.error {
            Some(e) => (self.text, Err(e.into())),
            None => (self.text, Ok(self.args)),
        }
    }

    /// The statement, to execute (an argument that could not be encoded fails it then).
    pub fn build(self) -> Query<'static, Any, AnyArguments> {
        let (text, args) = self.finish();
        sqlx_core::query::query_with_result(AssertSqlSafe(text), args)
    }

    /// The statement, its rows read as `T`.
    pub fn build_query_as<T>(self) -> QueryAs<'static, Any, T, AnyArguments>
    where
        T: for<'r> FromRow<'r, sqlx::any::AnyRow>,
    {
        let (text, args) = self.finish();
        sqlx_core::query_as::query_as_with_result(AssertSqlSafe(text), args)
    }

    /// The statement, its first column read as `T`.
    pub fn build_query_scalar<T>(self) -> QueryScalar<'static, Any, T, AnyArguments>
    where
        (T,): for<'r> FromRow<'r, sqlx::any::AnyRow>,
    {
        let (text, args) = self.finish();
        sqlx_core::query_scalar::query_scalar_with_result(AssertSqlSafe(text), args)
    }
}

/// One row of a `VALUES` list.
pub struct Values<'a> {
    sql: &'a mut Sql,
    first: bool,
}

impl Values<'_> {
    /// The next value of the row.
    pub fn push_bind<'t, T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'t, Any> + Type<Any>,
    {
        if !self.first {
            self.sql.text.push_str(", ");
        }
        self.first = false;
        self.sql.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut q = Sql::new("INSERT INTO t (a, b) ");
        q.push_values([(1_i64, "x"), (2, "y")], |row, (a, b)| {
            row.push_bind(a).push_bind(b.to_owned());
        });
        q.push(" WHERE c = ").push_bind(3_i64);
        assert_eq!(q.text(), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) WHERE c = $5");
    }
}
