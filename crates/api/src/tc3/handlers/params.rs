//! API 3.0 handlers of an instance's redis parameters: DescribeInstanceParams and
//! ModifyInstanceParams.

use super::{fields, Fields};
use crate::tc3::params::Params3;
use crate::AppState;
use crsd_core::params::ParamKind;
use crsd_core::{Error, Result};
use serde_json::{json, Value};

/// DescribeInstanceParams.
pub(super) async fn describe_instance_params(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let list = svc
        .instance_params(app, &p.required_str("InstanceId")?)
        .await?;
    let (mut enums, mut ints, mut texts) = (Vec::new(), Vec::new(), Vec::new());
    for (def, current) in &list {
        let base = json!({
            "ParamName": def.name,
            "NeedRestart": "false",
            "DefaultValue": def.default,
            "CurrentValue": current,
            "Tips": def.tips,
            "Status": 1,
        });
        let mut v = base.as_object().cloned().unwrap_or_default();
        match def.kind {
            ParamKind::Enum(values) => {
                v.insert("ValueType".into(), json!("enum"));
                v.insert("EnumValue".into(), json!(values));
                enums.push(Value::Object(v));
            }
            ParamKind::Integer { min, max } => {
                v.insert("ValueType".into(), json!("integer"));
                v.insert("Min".into(), json!(min.to_string()));
                v.insert("Max".into(), json!(max.to_string()));
                v.insert("Unit".into(), json!(""));
                ints.push(Value::Object(v));
            }
            ParamKind::Text { chars } => {
                v.insert("ValueType".into(), json!("text"));
                v.insert("TextValue".into(), json!([chars]));
                texts.push(Value::Object(v));
            }
        }
    }
    Ok(fields([
        ("TotalCount", json!(list.len())),
        ("InstanceEnumParam", json!(enums)),
        ("InstanceIntegerParam", json!(ints)),
        ("InstanceTextParam", json!(texts)),
        ("InstanceMultiParam", json!([])),
    ]))
}

/// ModifyInstanceParams.
pub(super) async fn modify_instance_params(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let pairs: Vec<(String, String)> = match p.get("InstanceParams") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                let key = item.get("Key").and_then(Value::as_str);
                let value = item.get("Value").map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                match (key, value) {
                    (Some(k), Some(v)) => Ok((k.to_string(), v)),
                    _ => Err(Error::invalid("InstanceParams", "each needs Key and Value")),
                }
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(Error::invalid(
                "InstanceParams",
                "must be a list of objects with Key and Value",
            ))
        }
        None => return Err(Error::MissingParameter("InstanceParams".into())),
    };
    let (changed, task) = svc.modify_params(app, &id, &pairs).await?;
    Ok(fields([
        ("Changed", json!(changed)),
        ("TaskId", json!(task.unwrap_or(0))),
    ]))
}
