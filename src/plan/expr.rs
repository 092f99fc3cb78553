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

/// What a name or an expression gives: a number or true/false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Number,
    Flag,
}

impl Ty {
    fn word(self) -> &'static str {
        match self {
            Ty::Number => "a number",
            Ty::Flag => "a flag (true/false)",
        }
    }
}

/// Checks a condition's types before it runs: comparisons and arithmetic
/// over numbers, `&&` `||` `!` over flags, `==` between the same types, and
/// true/false as the outcome. evalexpr would take `sensor_fault == 1` and
/// answer false for ever (a flag is never equal to a number): here it is
/// an error naming the variable. `ty` gives each variable's type.
pub fn check_condition(tree: &Tree, ty: &dyn Fn(&str) -> Option<Ty>) -> Result<(), String> {
    match infer(tree, ty)? {
        Ty::Flag => Ok(()),
        Ty::Number => Err("gives a number, not true/false: compare it (e.g. `>= 1.8`)".into()),
    }
}

/// An expression as written (infix), for messages.
fn describe(node: &Tree) -> String {
    use evalexpr::Operator as Op;
    let kids = node.children();
    let kid = |i: usize| kids.get(i).map_or(String::from("?"), describe);
    let binary = |op: &str| format!("{} {op} {}", kid(0), kid(1));
    match node.operator() {
        Op::RootNode if kids.len() == 1 => format!("({})", kid(0)),
        Op::Add => binary("+"),
        Op::Sub => binary("-"),
        Op::Mul => binary("*"),
        Op::Div => binary("/"),
        Op::Mod => binary("%"),
        Op::Exp => binary("^"),
        Op::Eq => binary("=="),
        Op::Neq => binary("!="),
        Op::Gt => binary(">"),
        Op::Lt => binary("<"),
        Op::Geq => binary(">="),
        Op::Leq => binary("<="),
        Op::And => binary("&&"),
        Op::Or => binary("||"),
        Op::Neg => format!("-{}", kid(0)),
        Op::Not => format!("!{}", kid(0)),
        Op::Const { value } => value.to_string(),
        Op::VariableIdentifierRead { identifier } => identifier.clone(),
        other => other.to_string(),
    }
}

fn infer(node: &Tree, ty: &dyn Fn(&str) -> Option<Ty>) -> Result<Ty, String> {
    use evalexpr::Operator as Op;
    let kids = node.children();
    let arg = |i: usize| -> Result<Ty, String> {
        kids.get(i).map_or(Err("an operator lacks an operand".to_string()), |k| infer(k, ty))
    };
    let want = |i: usize, t: Ty, op: &str| -> Result<(), String> {
        let got = arg(i)?;
        if got == t {
            return Ok(());
        }
        let what = describe(&kids[i]);
        let hint = if got == Ty::Flag { " (a flag is true/false: write `name` or `!name`)" } else { "" };
        Err(format!("`{op}` needs {} but `{what}` is {}{hint}", t.word(), got.word()))
    };
    match node.operator() {
        Op::RootNode => match kids {
            [one] => infer(one, ty),
            [] => Err("the expression is empty".into()),
            _ => Err("one expression, not several".into()),
        },
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Exp => {
            let op = match node.operator() {
                Op::Add => "+",
                Op::Sub => "-",
                Op::Mul => "*",
                Op::Div => "/",
                Op::Mod => "%",
                _ => "^",
            };
            want(0, Ty::Number, op)?;
            want(1, Ty::Number, op)?;
            Ok(Ty::Number)
        }
        Op::Neg => {
            want(0, Ty::Number, "-")?;
            Ok(Ty::Number)
        }
        Op::Gt | Op::Lt | Op::Geq | Op::Leq => {
            let op = match node.operator() {
                Op::Gt => ">",
                Op::Lt => "<",
                Op::Geq => ">=",
                _ => "<=",
            };
            want(0, Ty::Number, op)?;
            want(1, Ty::Number, op)?;
            Ok(Ty::Flag)
        }
        Op::Eq | Op::Neq => {
            let (a, b) = (arg(0)?, arg(1)?);
            if a != b {
                return Err(format!(
                    "`{}` compares {} with {}: it would never be true (a flag is true/false: write `name` or `!name`)",
                    describe(node),
                    a.word(),
                    b.word()
                ));
            }
            Ok(Ty::Flag)
        }
        Op::And | Op::Or => {
            let op = if matches!(node.operator(), Op::And) { "&&" } else { "||" };
            want(0, Ty::Flag, op)?;
            want(1, Ty::Flag, op)?;
            Ok(Ty::Flag)
        }
        Op::Not => {
            want(0, Ty::Flag, "!")?;
            Ok(Ty::Flag)
        }
        Op::Const { value } => match value {
            EValue::Float(_) | EValue::Int(_) => Ok(Ty::Number),
            EValue::Boolean(_) => Ok(Ty::Flag),
            other => Err(format!("{other} is neither a number nor true/false")),
        },
        Op::VariableIdentifierRead { identifier } => {
            ty(identifier).ok_or_else(|| format!("unknown name {identifier:?}"))
        }
        other => Err(format!("`{other}` is not allowed in a condition")),
    }
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
    fn condition_types_are_checked_before_they_run() {
        let ty = |n: &str| match n {
            "sensor_fault" | "pump1_fault" => Some(Ty::Flag),
            "forebay_level_m" | "pumps_faulted" | "flood_control_level_m" => Some(Ty::Number),
            _ => None,
        };
        let check = |text: &str| check_condition(&parse(text).unwrap(), &ty);
        for ok in [
            "sensor_fault",
            "!sensor_fault && forebay_level_m >= 1.8",
            "forebay_level_m >= flood_control_level_m - 0.80 && pumps_faulted >= 1",
            "(pump1_fault || sensor_fault) == true",
            "pumps_faulted == 0",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        let e = check("sensor_fault == 1").unwrap_err();
        assert!(e.contains("compares a flag (true/false) with a number"), "{e}");
        let e = check("pump1_fault > 0").unwrap_err();
        assert!(e.contains("`>` needs a number but `pump1_fault` is a flag"), "{e}");
        let e = check("forebay_level_m && sensor_fault").unwrap_err();
        assert!(e.contains("`&&` needs a flag (true/false) but `forebay_level_m` is a number"), "{e}");
        let e = check("forebay_level_m + 1").unwrap_err();
        assert!(e.contains("gives a number, not true/false"), "{e}");
        let e = check("\"on\" == sensor_fault").unwrap_err();
        assert!(e.contains("neither a number nor true/false"), "{e}");
        assert!(check("a = 1").is_err(), "assignment");
    }

    #[test]
    fn parse_errors_are_explained() {
        let e = parse("forebay_level_m >= && 1").unwrap_err();
        assert!(e.starts_with("cannot parse"), "{e}");
    }
}
