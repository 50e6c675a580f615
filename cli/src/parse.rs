//! Parsers for argument values that are more than a plain number or string. They only check
//! the shape of what was typed; what is allowed is the server's call.

use castplane_proto::v1 as pb;

/// A quota given on the command line: a number, or `unlimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitArg(pub Option<u64>);

impl LimitArg {
    pub fn to_wire(self) -> pb::Limit {
        pb::Limit { max: self.0 }
    }
}

pub fn parse_limit(text: &str) -> Result<LimitArg, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("unlimited") {
        return Ok(LimitArg(None));
    }
    text.parse::<u64>()
        .map(|n| LimitArg(Some(n)))
        .map_err(|_| format!("{text:?} is neither a whole number nor `unlimited`"))
}

/// An inclusive port range `FIRST-LAST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRangeArg {
    pub first: u16,
    pub last: u16,
}

pub fn parse_port_range(text: &str) -> Result<PortRangeArg, String> {
    let usage = || format!("{text:?} is not a port range FIRST-LAST, e.g. 8000-8999");
    let (first, last) = text.trim().split_once('-').ok_or_else(usage)?;
    let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
    let (Some(first), Some(last)) = (port(first), port(last)) else {
        return Err(format!(
            "{text:?} is not a port range: ports are 1-65535, e.g. 8000-8999"
        ));
    };
    if first > last {
        return Err(format!("{text:?}: the first port is above the last"));
    }
    Ok(PortRangeArg { first, last })
}

/// Names accepted for service types, as the CLI spells them.
pub const SERVICE_TYPE_NAMES: &str = "icecast, shoutcast, video";

pub fn service_type_from_name(name: &str) -> Option<pb::ServiceType> {
    match name.trim().to_ascii_lowercase().as_str() {
        "icecast" => Some(pb::ServiceType::Icecast),
        "shoutcast" => Some(pb::ServiceType::Shoutcast),
        "video" => Some(pb::ServiceType::Video),
        _ => None,
    }
}

pub fn parse_service_type(text: &str) -> Result<pb::ServiceType, String> {
    service_type_from_name(text)
        .ok_or_else(|| format!("{text:?} is not a service type ({SERVICE_TYPE_NAMES})"))
}

/// `--allow-types icecast,video`; `none` allows nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeList(pub Vec<pb::ServiceType>);

pub fn parse_type_list(text: &str) -> Result<TypeList, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(TypeList(Vec::new()));
    }
    let mut types = Vec::new();
    for part in text.split(',') {
        if part.trim().is_empty() {
            return Err(format!(
                "{text:?}: empty entry; give a comma-separated list of {SERVICE_TYPE_NAMES}, or `none`"
            ));
        }
        let t = parse_service_type(part)?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    Ok(TypeList(types))
}

/// `--default-type icecast`, or `none` to clear a saved default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTypeArg(pub Option<pb::ServiceType>);

pub fn parse_default_type(text: &str) -> Result<DefaultTypeArg, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(DefaultTypeArg(None));
    }
    parse_service_type(text).map(|t| DefaultTypeArg(Some(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_numbers_or_unlimited() {
        assert_eq!(parse_limit("10"), Ok(LimitArg(Some(10))));
        assert_eq!(parse_limit("0"), Ok(LimitArg(Some(0))));
        assert_eq!(parse_limit("unlimited"), Ok(LimitArg(None)));
        assert_eq!(parse_limit("UNLIMITED"), Ok(LimitArg(None)));
        assert!(parse_limit("-1").is_err());
        assert!(parse_limit("ten").is_err());
        assert!(parse_limit("").is_err());
        assert_eq!(
            parse_limit("unlimited").map(LimitArg::to_wire).unwrap().max,
            None
        );
    }

    #[test]
    fn port_ranges_are_first_dash_last() {
        assert_eq!(
            parse_port_range("8000-8999"),
            Ok(PortRangeArg {
                first: 8000,
                last: 8999
            })
        );
        assert_eq!(
            parse_port_range("9000-9000"),
            Ok(PortRangeArg {
                first: 9000,
                last: 9000
            })
        );
        assert!(parse_port_range("8000").is_err());
        assert!(parse_port_range("8999-8000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("1-70000").is_err());
        assert!(parse_port_range("a-b").is_err());
    }

    #[test]
    fn type_lists() {
        assert_eq!(
            parse_type_list("icecast,video"),
            Ok(TypeList(vec![
                pb::ServiceType::Icecast,
                pb::ServiceType::Video
            ]))
        );
        assert_eq!(
            parse_type_list("Shoutcast, shoutcast"),
            Ok(TypeList(vec![pb::ServiceType::Shoutcast]))
        );
        assert_eq!(parse_type_list("none"), Ok(TypeList(vec![])));
        assert!(parse_type_list("icecast,,video").is_err());
        assert!(parse_type_list("flac").is_err());
        assert_eq!(parse_default_type("none"), Ok(DefaultTypeArg(None)));
        assert_eq!(
            parse_default_type("video"),
            Ok(DefaultTypeArg(Some(pb::ServiceType::Video)))
        );
    }
}
