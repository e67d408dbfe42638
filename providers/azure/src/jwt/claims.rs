//! The JOSE header and the claims of a token, read into the few fields marketlink checks or
//! keeps, borrowed from the decoded JSON where no escape has to be undone.
//!
//! Each field reads as `serde_json::Value`'s accessors read it (`as_i64`, `as_str`): a claim of
//! another type counts as absent, and a repeated claim keeps its last value, so these accept and
//! refuse exactly what a map of every claim did, without building one (docs/performance.md,
//! "Verification").

use std::{borrow::Cow, fmt};

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// A string claim (`Value::as_str`): `None` when absent or not a string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub Option<Cow<'a, str>>);

impl Text<'_> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// An integer claim (`Value::as_i64`): `None` when absent, fractional, out of `i64` or not a
/// number (NumericDate is "seconds", and we always read it as an integer).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Integer(pub Option<i64>);

/// `aud`: one string, or the strings of an array (other items ignored), else none.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) enum Audiences<'a> {
    #[default]
    None,
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Audiences<'_> {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&Cow<'_, str>>, &[Cow<'_, str>]) = match self {
            Self::None => (None, &[]),
            Self::One(a) => (Some(a), &[]),
            Self::Many(items) => (None, items),
        };
        one.into_iter().chain(many).map(AsRef::as_ref)
    }
}

/// The claims of an Entra token marketlink reads: the webhook's (`exp`, `nbf`, `aud`, `iss`,
/// `tid`, `azp`/`appid`) and sign-in's (those, `nonce` and the user's names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Claims<'a> {
    pub exp: Integer,
    pub nbf: Integer,
    pub aud: Audiences<'a>,
    pub iss: Text<'a>,
    pub tid: Text<'a>,
    /// The v1 tenant claim's long name, read when `tid` is absent.
    pub tenant_id_uri: Text<'a>,
    pub azp: Text<'a>,
    pub appid: Text<'a>,
    pub nonce: Text<'a>,
    pub oid: Text<'a>,
    pub sub: Text<'a>,
    pub email: Text<'a>,
    pub preferred_username: Text<'a>,
    pub name: Text<'a>,
}

/// The JOSE header fields that decide the key and the algorithm.
#[derive(Debug, Default)]
pub(crate) struct Header<'a> {
    pub alg: Text<'a>,
    pub kid: Text<'a>,
}

/// A JSON value read, and checked, as `serde_json::Value` reads one (strings valid UTF-8
/// without lone surrogates, numbers in range), but not kept. `IgnoredAny` would let through
/// strings a map of every claim refused.
struct Skip;

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Skip)
    }
    fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Skip)
    }
    fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Skip)
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Skip)
    }
    fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Skip)
    }
    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Skip)
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_key::<Skip>()?.is_some() {
        map.next_value::<Skip>()?;
    }
    Ok(())
}

/// Consumes any JSON value; `Some` for a string.
struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Borrowed(v))))
    }
    fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_owned()))))
    }
    fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v))))
    }
    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Text(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Text(None))
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

/// Consumes any JSON value; `Some` for an integer that fits `i64`.
struct IntegerVisitor;

impl<'de> Visitor<'de> for IntegerVisitor {
    type Value = Integer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Integer(Some(v)))
    }
    fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Integer(i64::try_from(v).ok()))
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Integer(None))
    }
    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Integer(None))
    }
    fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Integer(None))
    }
    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(Integer(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Integer(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Integer(None))
    }
}

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntegerVisitor)
    }
}

/// Consumes any JSON value; the audiences of a string or an array.
struct AudiencesVisitor;

impl<'de> Visitor<'de> for AudiencesVisitor {
    type Value = Audiences<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Text(item)) = seq.next_element::<Text<'de>>()? {
            items.extend(item);
        }
        Ok(Audiences::Many(items))
    }
    fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Audiences::One(Cow::Borrowed(v)))
    }
    fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Audiences::One(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Audiences::One(Cow::Owned(v)))
    }
    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Audiences::None)
    }
    fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Audiences::None)
    }
    fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Audiences::None)
    }
    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Audiences::None)
    }
    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(Audiences::None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Audiences::None)
    }
}

impl<'de> Deserialize<'de> for Audiences<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AudiencesVisitor)
    }
}

/// Reads a JSON object's members with `read(key, map)`, which takes the value of the members
/// it knows and returns `false` for the others (skipped unbuilt). A key with escapes is matched
/// unescaped, as a map of every claim would have keyed it.
fn read_object<'de, A, F>(mut map: A, mut read: F) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnMut(&str, &mut A) -> Result<bool, A::Error>,
{
    while let Some(key) = map.next_key::<Text<'de>>()? {
        let known = match key.get() {
            Some(key) => read(key, &mut map)?,
            None => false,
        };
        if !known {
            map.next_value::<Skip>()?;
        }
    }
    Ok(())
}

/// A JSON object only: a payload that is an array or a scalar is not claims.
struct ClaimsVisitor;

impl<'de> Visitor<'de> for ClaimsVisitor {
    type Value = Claims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut c = Claims::default();
        read_object(map, |key, map| {
            match key {
                "exp" => c.exp = map.next_value()?,
                "nbf" => c.nbf = map.next_value()?,
                "aud" => c.aud = map.next_value()?,
                "iss" => c.iss = map.next_value()?,
                "tid" => c.tid = map.next_value()?,
                "http://schemas.microsoft.com/identity/claims/tenantid" => {
                    c.tenant_id_uri = map.next_value()?;
                }
                "azp" => c.azp = map.next_value()?,
                "appid" => c.appid = map.next_value()?,
                "nonce" => c.nonce = map.next_value()?,
                "oid" => c.oid = map.next_value()?,
                "sub" => c.sub = map.next_value()?,
                "email" => c.email = map.next_value()?,
                "preferred_username" => c.preferred_username = map.next_value()?,
                "name" => c.name = map.next_value()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(c)
    }
}

impl<'de> Deserialize<'de> for Claims<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ClaimsVisitor)
    }
}

/// A JSON object only. `alg` and `kid` may appear once each, as jsonwebtoken's header required:
/// the key and the algorithm are never a matter of which copy wins.
struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let (mut alg, mut kid) = (None, None);
        read_object(map, |key, map| {
            let (slot, name) = match key {
                "alg" => (&mut alg, "alg"),
                "kid" => (&mut kid, "kid"),
                _ => return Ok(false),
            };
            if slot.is_some() {
                return Err(Error::duplicate_field(name));
            }
            *slot = Some(map.next_value::<Text<'de>>()?);
            Ok(true)
        })?;
        Ok(Header {
            alg: alg.unwrap_or_default(),
            kid: kid.unwrap_or_default(),
        })
    }
}

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(HeaderVisitor)
    }
}
