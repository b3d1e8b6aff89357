//! Kubernetes' quantity library for CEL (`k8s.io/apiserver/pkg/cel/library/quantity.go`):
//! `quantity("1.5Gi")`, `isQuantity(s)`, and on a quantity `isInteger`, `asInteger`,
//! `asApproximateFloat`, `sign`, `add`, `sub`, `compareTo`, `isGreaterThan`, `isLessThan`.
//! A quantity is held exactly, in nano units (`1n`), as `resource.Quantity` compares them.

use std::cmp::Ordering;

use cel::common::traits::Comparer;
use cel::common::types::{CelBool, CelDouble, CelInt, INT_TYPE, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{take, text};
use crate::quantity::Quantity;

/// The CEL type of a quantity (`kubernetes.Quantity`), a value for each declaration.
const QUANTITY: Type = Type::new_unspecified_type("kubernetes.Quantity");
/// The same, for the values' type.
static QUANTITY_TYPE: Type = QUANTITY;

const NANOS: i128 = 1_000_000_000;

opaque!(Quantity, QUANTITY_TYPE, as_comparer);

impl Comparer for Quantity {
    fn compare(&self, rhs: &dyn Val) -> Result<Ordering, ExecutionError> {
        rhs.downcast_ref::<Self>()
            .map(|r| self.cmp(r))
            .ok_or_else(|| ExecutionError::function_error("compareTo", "expects a quantity"))
    }
}

/// Registers the library on `env`.
pub(super) fn declare(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload(
        "quantity",
        "string_to_quantity",
        vec![STRING_TYPE],
        quantity,
    )?;
    env.add_overload(
        "isQuantity",
        "is_quantity_string",
        vec![STRING_TYPE],
        is_quantity,
    )?;
    let q = || QUANTITY;
    env.add_member_overload("isInteger", "quantity_is_integer", q(), vec![], is_integer)?;
    env.add_member_overload("asInteger", "quantity_get_integer", q(), vec![], as_integer)?;
    env.add_member_overload(
        "asApproximateFloat",
        "quantity_get_float",
        q(),
        vec![],
        as_float,
    )?;
    env.add_member_overload("sign", "quantity_get_sign", q(), vec![], sign)?;
    env.add_member_overload("add", "quantity_add", q(), vec![q()], add)?;
    env.add_member_overload("add", "quantity_add_int", q(), vec![INT_TYPE], add)?;
    env.add_member_overload("sub", "quantity_sub", q(), vec![q()], sub)?;
    env.add_member_overload("sub", "quantity_sub_int", q(), vec![INT_TYPE], sub)?;
    env.add_member_overload("compareTo", "quantity_compare", q(), vec![q()], compare_to)?;
    env.add_member_overload("isGreaterThan", "quantity_greater", q(), vec![q()], greater)?;
    env.add_member_overload("isLessThan", "quantity_less", q(), vec![q()], less)?;
    Ok(())
}

/// A quantity argument, or an int one taken as that many units.
fn quantity_arg(value: &dyn Val, function: &str) -> Result<Quantity, ExecutionError> {
    if let Some(q) = value.downcast_ref::<Quantity>() {
        return Ok(*q);
    }
    value
        .downcast_ref::<CelInt>()
        .map(|i| Quantity(i128::from(*i.inner()) * NANOS))
        .ok_or_else(|| ExecutionError::function_error(function, "expects a quantity or an int"))
}

fn quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    Quantity::parse(text(s.as_ref(), "quantity")?)
        .map(CowVal::owned)
        .map_err(|e| ExecutionError::function_error("quantity", e))
}

fn is_quantity<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let ok = Quantity::parse(text(s.as_ref(), "isQuantity")?).is_ok();
    Ok(CowVal::owned(CelBool::from(ok)))
}

/// The value as an int64, when it is a whole number that fits.
fn integer(q: Quantity) -> Option<i64> {
    (q.0 % NANOS == 0)
        .then(|| i64::try_from(q.0 / NANOS).ok())
        .flatten()
}

fn is_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = take(args)?;
    let q = quantity_arg(q.as_ref(), "isInteger")?;
    Ok(CowVal::owned(CelBool::from(integer(q).is_some())))
}

fn as_integer<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = take(args)?;
    let q = quantity_arg(q.as_ref(), "asInteger")?;
    integer(q)
        .map(|i| CowVal::owned(CelInt::from(i)))
        .ok_or_else(|| {
            ExecutionError::function_error(
                "asInteger",
                "cannot convert value to integer; overflow or loss of precision",
            )
        })
}

fn as_float<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = take(args)?;
    let q = quantity_arg(q.as_ref(), "asApproximateFloat")?;
    #[allow(clippy::cast_precision_loss)] // approximate, as the name says
    let value = q.0 as f64 / 1e9;
    Ok(CowVal::owned(CelDouble::from(value)))
}

fn sign<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [q] = take(args)?;
    let q = quantity_arg(q.as_ref(), "sign")?;
    Ok(CowVal::owned(CelInt::from(match q.0.cmp(&0) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    })))
}

fn arithmetic<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    op: fn(i128, i128) -> Option<i128>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    let (a, b) = (
        quantity_arg(a.as_ref(), function)?,
        quantity_arg(b.as_ref(), function)?,
    );
    op(a.0, b.0)
        .map(|v| CowVal::owned(Quantity(v)))
        .ok_or_else(|| ExecutionError::function_error(function, "overflow"))
}

fn add<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(args, "add", i128::checked_add)
}

fn sub<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    arithmetic(args, "sub", i128::checked_sub)
}

fn ordering<'b, 'v>(args: Vec<CowVal<'b, 'v>>, function: &str) -> Result<Ordering, ExecutionError> {
    let [a, b] = take(args)?;
    Ok(quantity_arg(a.as_ref(), function)?.cmp(&quantity_arg(b.as_ref(), function)?))
}

fn compare_to<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let order = ordering(args, "compareTo")?;
    Ok(CowVal::owned(CelInt::from(order as i64)))
}

fn greater<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let order = ordering(args, "isGreaterThan")?;
    Ok(CowVal::owned(CelBool::from(order == Ordering::Greater)))
}

fn less<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let order = ordering(args, "isLessThan")?;
    Ok(CowVal::owned(CelBool::from(order == Ordering::Less)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::QuantityError;

    #[test]
    fn quantities_parse_as_resource_parse_quantity_reads_them() {
        let q = |t: &str| Quantity::parse(t).map(|q| q.0);
        assert_eq!(q("1"), Ok(NANOS));
        assert_eq!(q("1.5Gi"), Ok(3 * (1 << 29) * NANOS));
        assert_eq!(q("500m"), Ok(NANOS / 2));
        assert_eq!(q("1e3"), Ok(1000 * NANOS));
        assert_eq!(q("2E"), Ok(2 * 10_i128.pow(18) * NANOS));
        assert_eq!(q("-1k"), Ok(-1000 * NANOS));
        assert_eq!(q(".5"), Ok(NANOS / 2));
        assert_eq!(q("0.1n"), Ok(1), "below 1n rounds up");
        for bad in ["", "Gi", "1.2.3", "1X", "1e", "1 Gi", "--1", "1Mib"] {
            assert_eq!(q(bad), Err(QuantityError::Format), "{bad}");
        }
    }
}
