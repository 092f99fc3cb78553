//! Expressions in the plan, evaluated by `evalexpr`: thresholds over site
//! parameters (`"warning_level_m - 0.30"`) and conditions over a site's
//! metrics (`"forebay_level_m >= 1.80 && pumps_faulted >= 1"`).
//!
//! evalexpr was chosen over cel-interpreter and rhai: it is small, has no
//! dependencies of note, parses once into a tree that is evaluated against
//! any `Context` (ours is a borrowed list of variables, no allocation per
//! evaluation), and lists a tree's variable identifiers — which is how an
//! unknown metric in a condition becomes a validation error at load time.
//! It is not Turing-complete in the way we use it (no assignment, no loops).

use evalexpr::{
    build_operator_tree, Context, DefaultNumericTypes, EvalexprError, EvalexprResult, Node, Value as EValue,
};

pub type Tree = Node<DefaultNumericTypes>;

/// Parses an expression, refusing one whose operators lack operands
/// (`a >= && 1`), which evalexpr's parser lets through to evaluation.
pub fn parse(text: &str) -> Result<Tree, String> {
    let tree = build_operator_tree::<DefaultNumericTypes>(text)
        .map_err(|e| format!("cannot parse {text:?}: {e}"))?;
    // Evaluate once with every variable at 0 (or false): only a malformed
    // tree fails with a wrong operand count whatever the values.
    for probe in [EValue::Float(0.0), EValue::Boolean(false)] {
        let names = variables(&tree);
        let vars: Vec<(&str, EValue)> = names.iter().map(|n| (n.as_str(), probe.clone())).collect();
        if let Err(e @ EvalexprError::WrongOperatorArgumentAmount { .. }) =
            tree.eval_with_context(&Vars { vars: &vars })
        {
            return Err(format!("cannot parse {text:?}: {e}"));
        }
    }
    Ok(tree)
}

/// The variables an expression reads.
pub fn variables(tree: &Tree) -> Vec<String> {
    let mut v: Vec<String> = tree.iter_variable_identifiers().map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

/// Evaluates a numeric expression over named numbers (a threshold over the
/// site's parameters).
pub fn eval_number(tree: &Tree, vars: &[(&str, f64)]) -> Result<f64, String> {
    let values: Vec<(&str, EValue)> = vars.iter().map(|(k, v)| (*k, EValue::Float(*v))).collect();
    let ctx = Vars { vars: &values };
    match tree.eval_with_context(&ctx) {
        Ok(EValue::Float(f)) if f.is_finite() => Ok(f),
        Ok(EValue::Int(i)) => Ok(i as f64),
        Ok(other) => Err(format!("gives {other}, not a number")),
        Err(e) => Err(explain(e)),
    }
}

/// Evaluates a condition; a missing variable (a metric not yet received) or a
/// type mismatch is "not true".
pub fn eval_condition(tree: &Tree, vars: &[(&str, EValue)]) -> bool {
    matches!(tree.eval_boolean_with_context(&Vars { vars }), Ok(true))
}

fn explain(e: EvalexprError<DefaultNumericTypes>) -> String {
    match e {
        EvalexprError::VariableIdentifierNotFound(v) => format!("unknown name {v:?}"),
        other => other.to_string(),
    }
}

/// A borrowed list of variables as an evalexpr context: a linear search over
/// a handful of names beats hashing here.
pub struct Vars<'a, 'b> {
    pub vars: &'a [(&'b str, EValue)],
}

impl Context for Vars<'_, '_> {
    type NumericTypes = DefaultNumericTypes;

    fn get_value(&self, identifier: &str) -> Option<&EValue> {
        self.vars.iter().find(|(k, _)| *k == identifier).map(|(_, v)| v)
    }

    fn call_function(
        &self,
        identifier: &str,
        _argument: &EValue,
    ) -> EvalexprResult<EValue, DefaultNumericTypes> {
        Err(EvalexprError::FunctionIdentifierNotFound(identifier.to_string()))
    }

    fn are_builtin_functions_disabled(&self) -> bool {
        false
    }

    fn set_builtin_functions_disabled(&mut self, _disabled: bool) -> EvalexprResult<(), DefaultNumericTypes> {
        Err(EvalexprError::BuiltinFunctionsCannotBeDisabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_over_parameters() {
        let t = parse("warning_level_m - 0.30").unwrap();
        assert_eq!(variables(&t), ["warning_level_m"]);
        assert!((eval_number(&t, &[("warning_level_m", 4.5)]).unwrap() - 4.2).abs() < 1e-9);
        assert_eq!(eval_number(&parse("1.8").unwrap(), &[]).unwrap(), 1.8);
        assert_eq!(eval_number(&parse("2").unwrap(), &[]).unwrap(), 2.0);
        let e = eval_number(&t, &[]).unwrap_err();
        assert!(e.contains("unknown name \"warning_level_m\""), "{e}");
        assert!(eval_number(&parse("1 > 0").unwrap(), &[]).is_err());
    }

    #[test]
    fn conditions_over_metrics() {
        let t = parse("forebay_level_m >= 1.80 && pumps_faulted >= 1").unwrap();
        assert_eq!(variables(&t), ["forebay_level_m", "pumps_faulted"]);
        let vars = |level: f64, faulted: i64| {
            vec![("forebay_level_m", EValue::Float(level)), ("pumps_faulted", EValue::Int(faulted))]
        };
        assert!(eval_condition(&t, &vars(1.85, 1)));
        assert!(!eval_condition(&t, &vars(1.75, 1)));
        assert!(!eval_condition(&t, &vars(1.85, 0)));
        // A metric not received yet: not true, not an error.
        assert!(!eval_condition(&t, &[("forebay_level_m", EValue::Float(2.0))]));
        let flag = parse("sensor_fault").unwrap();
        assert!(eval_condition(&flag, &[("sensor_fault", EValue::Boolean(true))]));
        assert!(!eval_condition(&flag, &[("sensor_fault", EValue::Float(1.0))]), "a number is not a flag");
    }

    #[test]
    fn parse_errors_are_explained() {
        let e = parse("forebay_level_m >= && 1").unwrap_err();
        assert!(e.starts_with("cannot parse"), "{e}");
    }
}
