//! Query strings, read one way by every route: percent-decoded pairs, where a parameter
//! given twice is refused unless the route documents it as repeatable (`status` of the
//! listing is; `openapi.json` says so with `explode`). Last-wins would have answered
//! `DELETE /v1/messages?phone=A&phone=B` by erasing B's messages, saying nothing of A's.

use std::borrow::Cow;
use std::collections::HashSet;

use super::ApiError;

/// Percent-decoded (name, value) pairs, in the order given.
pub type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// The pairs of `raw`, in order, once no parameter but those in `repeatable` is repeated.
pub fn pairs<'a>(raw: &'a str, repeatable: &[&str]) -> Result<Pairs<'a>, ApiError> {
    let pairs: Vec<_> = form_urlencoded::parse(raw.as_bytes()).collect();
    let mut seen = HashSet::new();
    for (name, _) in &pairs {
        // A pair without a name is refused by the route as an unknown parameter.
        if name.is_empty() || repeatable.contains(&name.as_ref()) {
            continue;
        }
        if !seen.insert(name.as_ref()) {
            return Err(ApiError::RepeatedParameter(name.clone().into_owned()));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_given_twice_is_refused_unless_it_repeats() {
        let error = pairs("phone=%2B1&phone=%2B2", &[]).expect_err("phone twice");
        assert!(matches!(&error, ApiError::RepeatedParameter(name) if name == "phone"));
        assert!(error.to_string().contains("more than once"), "{error}");
        let listed = pairs("status=sent&limit=5&status=failed", &["status"]).expect("valid");
        assert_eq!(listed.len(), 3);
        // The name is compared once decoded: `%6Cimit` is `limit`.
        assert!(pairs("limit=1&%6Cimit=2", &[]).is_err());
        // Pairs without a name are left to the route, which names none of them.
        assert_eq!(pairs("=a&=b", &[]).expect("no name repeats").len(), 2);
    }
}
