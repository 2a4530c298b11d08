//! Validation rules exactly as the seeds state them.

use crate::error::{Error, Result};
use crate::Field;

/// Special characters the v2 password rule names: `!@#%^*()`.
pub const PASSWORD_SPECIALS: &str = "!@#%^*()";

/// v2 password rule: 8-16 characters, at least two of letters, digits and `!@#%^*()`, and
/// nothing outside those classes.
pub fn check_password_v2(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::PasswordEmpty);
    }
    let len = password.chars().count();
    if !(8..=16).contains(&len) {
        return Err(Error::PasswordRule);
    }
    let (mut letters, mut digits, mut specials) = (false, false, false);
    for c in password.chars() {
        if c.is_ascii_alphabetic() {
            letters = true;
        } else if c.is_ascii_digit() {
            digits = true;
        } else if PASSWORD_SPECIALS.contains(c) {
            specials = true;
        } else {
            return Err(Error::PasswordRule);
        }
    }
    if [letters, digits, specials].iter().filter(|b| **b).count() < 2 {
        return Err(Error::PasswordRule);
    }
    Ok(())
}

/// Special characters the API 3.0 password rule names.
pub const PASSWORD_SPECIALS_API3: &str = "()`~!@#$%^&*-+=_|{}[]:;<>,.?/";

/// Which dialect's password rule applies: each API documents its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordPolicy {
    /// v2: 8-16 characters, two of letters / digits / `!@#%^*()`.
    #[default]
    V2,
    /// API 3.0: 8-64 characters, two of lower case / upper case / digits / the specials of
    /// [`PASSWORD_SPECIALS_API3`], not starting with `/`.
    Api3,
}

impl PasswordPolicy {
    pub fn check(self, password: &str) -> Result<()> {
        match self {
            PasswordPolicy::V2 => check_password_v2(password),
            PasswordPolicy::Api3 => check_password_api3(password),
        }
    }
}

/// The API 3.0 password rule (see [`PasswordPolicy::Api3`]).
pub fn check_password_api3(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::PasswordEmpty);
    }
    let len = password.chars().count();
    if !(8..=64).contains(&len) || password.starts_with('/') {
        return Err(Error::Api3PasswordRule);
    }
    let mut classes = [false; 4];
    for c in password.chars() {
        let class = if c.is_ascii_lowercase() {
            0
        } else if c.is_ascii_uppercase() {
            1
        } else if c.is_ascii_digit() {
            2
        } else if PASSWORD_SPECIALS_API3.contains(c) {
            3
        } else {
            return Err(Error::Api3PasswordRule);
        };
        classes[class] = true;
    }
    if classes.iter().filter(|b| **b).count() < 2 {
        return Err(Error::Api3PasswordRule);
    }
    Ok(())
}

/// Instance names: 1-36 letters, digits, Chinese characters (not symbols), `_` and `-`.
pub fn check_instance_name(name: &str) -> Result<()> {
    let len = name.chars().count();
    if len > 36 {
        return Err(Error::InstanceNameTooLong);
    }
    if len == 0 || !name.chars().all(name_char_ok) {
        return Err(Error::InstanceNameRule);
    }
    Ok(())
}

fn name_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || is_cjk_ideograph(c)
}

fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0xF900..=0xFAFF)
}

/// Ids a client sends: crsd's own (instances, backups, deals) and those of the network objects
/// a client names and crsd keeps and shows (Capital Online `VdcId` / `BasePipeId`, API 3.0
/// `VpcId` / `SubnetId`, v2 `unVpcId` / `unSubnetId`). Seed 001 calls `VdcId` the data
/// center's number and shows a 36-character uuid.
pub const MAX_ID_CHARS: usize = 64;
/// Filters and search keys (a substring of a name or address).
pub const MAX_FILTER_CHARS: usize = 128;

/// [`check_text`] of a field the service names (each dialect names its parameter).
pub fn check_field_text(field: Field, value: &str, max_chars: usize) -> Result<()> {
    check_text(&field.to_string(), value, max_chars).map_err(|e| e.for_field(field))
}

/// Free text a client sends: at most `max_chars` characters and no control characters (none
/// belongs in an id, a name or a filter, and they would reach logs and listings).
pub fn check_text(name: &str, value: &str, max_chars: usize) -> Result<()> {
    if value.chars().nth(max_chars).is_some() {
        return Err(Error::invalid(
            name,
            format!("at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(name, "control characters are not allowed"));
    }
    Ok(())
}

/// The API 3.0 `VPort` every instance has unless asked otherwise (the model: "default 6379").
pub const API3_DEFAULT_VPORT: i64 = 6379;

/// `VPort` of CreateInstances: `None` for the default (or none), else the port asked for,
/// 1024-65535. With an address pool the instance gets its own address at that port (the
/// default: 6379); without, instances share one address, so a port other than the default
/// must be a free one of the operator's range (the service checks, naming `VPort`).
pub fn check_api3_vport(vport: Option<i64>) -> Result<Option<u16>> {
    match vport {
        None | Some(API3_DEFAULT_VPORT) => Ok(None),
        Some(p @ 1024..=65535) => Ok(Some(p as u16)),
        Some(other) => Err(Error::invalid(
            "VPort",
            format!("{other} is not a port of 1024-65535"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api3_password_rule() {
        let ok = |p: &str| check_password_api3(p).is_ok();
        assert!(ok("abcdefg1"));
        assert!(ok("abcdEFGH"));
        assert!(ok("myp@ss w/+=".replace(' ', "x").as_str()));
        assert!(ok(&format!("Aa1{}", "x".repeat(61))));
        assert!(!ok(&format!("Aa1{}", "x".repeat(62))), "65 characters");
        assert!(!ok("abcdefgh"), "one class");
        assert!(!ok("/abcdefg1"), "leading slash");
        assert!(!ok("abc1"), "short");
        assert!(!ok("abcdefg1 "), "space is no class");
        assert_eq!(check_password_api3(""), Err(Error::PasswordEmpty));
        assert!(PasswordPolicy::V2.check("abcdefgh1234567890").is_err());
        assert!(PasswordPolicy::Api3.check("abcdefgh1234567890").is_ok());
    }

    #[test]
    fn password_rule() {
        assert!(check_password_v2("49A2d!e@f12e").is_ok());
        assert!(check_password_v2("12D3E@!r5ed").is_ok());
        assert!(check_password_v2("abcd1234").is_ok());
        assert_eq!(check_password_v2(""), Err(Error::PasswordEmpty));
        assert_eq!(check_password_v2("abc123"), Err(Error::PasswordRule));
        assert_eq!(check_password_v2("abcdefghij"), Err(Error::PasswordRule));
        assert_eq!(check_password_v2("12345678"), Err(Error::PasswordRule));
        assert_eq!(
            check_password_v2("abcdefgh12345678x"),
            Err(Error::PasswordRule)
        );
        assert_eq!(check_password_v2("abcd 1234"), Err(Error::PasswordRule));
        assert_eq!(check_password_v2("abcd$1234"), Err(Error::PasswordRule));
    }

    #[test]
    fn name_rule() {
        assert!(check_instance_name("test_API").is_ok());
        assert!(check_instance_name("测试API专用").is_ok());
        assert!(check_instance_name("a-b_c").is_ok());
        assert_eq!(check_instance_name(""), Err(Error::InstanceNameRule));
        assert_eq!(check_instance_name("a b"), Err(Error::InstanceNameRule));
        assert_eq!(check_instance_name("名，"), Err(Error::InstanceNameRule));
        assert_eq!(
            check_instance_name(&"a".repeat(37)),
            Err(Error::InstanceNameTooLong)
        );
        assert!(check_instance_name(&"a".repeat(36)).is_ok());
    }

    #[test]
    fn free_text_is_bounded_and_without_control_characters() {
        assert!(check_text(
            "VdcId",
            "cacdf937-d484-435a-894b-241be9309d80",
            MAX_ID_CHARS
        )
        .is_ok());
        assert!(check_text("VdcId", &"a".repeat(64), MAX_ID_CHARS).is_ok());
        assert!(check_text("VdcId", &"a".repeat(65), MAX_ID_CHARS).is_err());
        assert!(
            check_text("VdcId", &"数".repeat(64), MAX_ID_CHARS).is_ok(),
            "characters"
        );
        for bad in ["a\u{0}", "a\nb", "\u{7f}", "a\u{85}"] {
            assert!(check_text("VdcId", bad, MAX_ID_CHARS).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vport_is_a_user_port() {
        assert_eq!(check_api3_vport(None), Ok(None));
        assert_eq!(check_api3_vport(Some(6379)), Ok(None));
        assert_eq!(check_api3_vport(Some(6380)), Ok(Some(6380)));
        for bad in [0, 80, 1023, 65536, -1] {
            let e = check_api3_vport(Some(bad)).unwrap_err();
            assert!(e.to_string().contains("VPort"), "{e}");
        }
    }
}
