//! Every vector of /work/shared/vectors/encoding.json.

use hush_proto::encoding::*;
use hush_proto::version::VersionRange;
use serde_json::Value;

mod common;
use common::load;

fn hexv(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn u(v: &Value) -> usize {
    v.as_u64().expect("number") as usize
}

/// "65533 x 'a'" → 65533 bytes of 'a'.
fn repeat_spec(spec: &str) -> Vec<u8> {
    let (n, c) = spec.split_once(" x '").expect("repeat spec");
    vec![c.as_bytes()[0]; n.parse().unwrap()]
}

fn msg_of(inputs: &Value) -> Vec<u8> {
    if let Some(m) = inputs.get("msg_ascii") {
        s(m).as_bytes().to_vec()
    } else {
        repeat_spec(s(&inputs["msg"]))
    }
}

fn enc<T: Encode>(v: T) -> Vec<u8> {
    v.to_bytes()
}

/// Checks one vector; returns false if the vector's family is unknown.
fn check(name: &str, i: &Value, e: &Value) -> bool {
    let family = name.split('.').next().unwrap();
    let expected_bytes = || hexv(&e["bytes_hex"]);
    match family {
        "int64" => {
            let n: i64 = match i.get("int64_str") {
                Some(t) => s(t).parse().unwrap(),
                None => i["int64"].as_i64().unwrap(),
            };
            assert_eq!(enc(n), expected_bytes(), "{name}");
            assert_eq!(i64::from_bytes(&expected_bytes()).unwrap(), n, "{name}");
        }
        "systemtime" => {
            let secs = e["system_seconds"].as_i64().unwrap();
            assert_eq!(enc(secs), expected_bytes(), "{name}");
            assert_eq!(i64::from_bytes(&expected_bytes()).unwrap(), secs);
        }
        "word16" => {
            let n = i["word16"].as_u64().unwrap() as u16;
            assert_eq!(enc(n), expected_bytes(), "{name}");
            assert_eq!(u16::from_bytes(&expected_bytes()).unwrap(), n);
        }
        "word32" => {
            let n = i["word32"].as_u64().unwrap() as u32;
            assert_eq!(enc(n), expected_bytes(), "{name}");
            assert_eq!(u32::from_bytes(&expected_bytes()).unwrap(), n);
        }
        "shortstring" | "string" => {
            let b = s(i.get("bytes_ascii").or(i.get("string")).unwrap()).as_bytes();
            let v = ShortString::new(b.to_vec()).unwrap();
            assert_eq!(enc(v.clone()), expected_bytes(), "{name}");
            assert_eq!(ShortString::from_bytes(&expected_bytes()).unwrap(), v);
        }
        "large" => {
            let b = s(&i["bytes_ascii"]).as_bytes();
            let v = Large::new(b.to_vec()).unwrap();
            assert_eq!(enc(v.clone()), expected_bytes(), "{name}");
            assert_eq!(Large::from_bytes(&expected_bytes()).unwrap(), v);
        }
        "tail" => {
            let b = s(&i["bytes_ascii"]).as_bytes();
            let eb = expected_bytes();
            let mut p = Parser::new(&eb);
            assert_eq!(p.tail(), b, "{name}");
            assert!(p.is_empty());
        }
        "bool" => {
            let b = i["bool"].as_bool().unwrap();
            assert_eq!(enc(b), expected_bytes(), "{name}");
            assert_eq!(bool::from_bytes(&expected_bytes()).unwrap(), b);
        }
        "maybe" => {
            if name == "maybe.nested.just_nothing" {
                let v: Option<Option<ShortString>> = Some(None);
                assert_eq!(enc(v.clone()), expected_bytes(), "{name}");
                assert_eq!(
                    Option::<Option<ShortString>>::from_bytes(&expected_bytes()).unwrap(),
                    v
                );
            } else {
                let v = i
                    .get("maybe_shortstring_ascii")
                    .map(|x| ShortString::new(s(x).as_bytes().to_vec()).unwrap());
                if v.is_none() {
                    assert!(i["maybe_shortstring"].is_null());
                }
                assert_eq!(enc(v.clone()), expected_bytes(), "{name}");
                assert_eq!(
                    Option::<ShortString>::from_bytes(&expected_bytes()).unwrap(),
                    v
                );
            }
        }
        "list" | "nonempty" => {
            let key = if family == "list" {
                "list_of_shortstring_ascii"
            } else {
                "nonempty_of_shortstring_ascii"
            };
            let items: Vec<Vec<u8>> = i[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| s(x).as_bytes().to_vec())
                .collect();
            let mut out = Vec::new();
            put_list(&mut out, &items, |o, x| put_short_string(o, x).unwrap()).unwrap();
            assert_eq!(out, expected_bytes(), "{name}");
            let eb = expected_bytes();
            let mut p = Parser::new(&eb);
            let parsed = if family == "list" {
                p.list(|p| p.short_string().map(<[u8]>::to_vec)).unwrap()
            } else {
                p.non_empty(|p| p.short_string().map(<[u8]>::to_vec))
                    .unwrap()
            };
            p.finish().unwrap();
            assert_eq!(parsed, items, "{name}");
            if family == "nonempty" {
                assert!(Parser::new(&[0]).non_empty(|p| p.byte()).is_err());
            }
        }
        "versionrange" => {
            let r = VersionRange::new(u(&i["min"]) as u16, u(&i["max"]) as u16).unwrap();
            assert_eq!(enc(r), expected_bytes(), "{name}");
            assert_eq!(VersionRange::from_bytes(&expected_bytes()).unwrap(), r);
        }
        "tuple" => {
            let mut out = vec![b'A'];
            put_short_string(&mut out, b"ab").unwrap();
            put_word16(&mut out, 7);
            put_bool(&mut out, true);
            assert_eq!(out, expected_bytes(), "{name}");
        }
        "pad" | "blockpad" => {
            let msg = msg_of(i);
            let len = u(i.get("padded_len").or(i.get("block_size")).unwrap());
            let r = pad(&msg, len);
            if let Some(err) = e.get("error") {
                assert_eq!(s(err), "CryptoLargeMsgError");
                assert_eq!(r, Err(PadError::LargeMsg), "{name}");
            } else if let Some(b) = e.get("bytes_hex") {
                let r = r.unwrap();
                assert_eq!(r, hexv(b), "{name}");
                assert_eq!(unpad(&r).unwrap(), &msg[..]);
            } else {
                let r = r.unwrap();
                assert_eq!(r.len(), u(&e["length"]), "{name}");
                assert!(r.starts_with(&hexv(&e["prefix_hex"])));
                assert!(r.ends_with(&hexv(&e["suffix_hex"])));
                assert!(e["unpad_roundtrip"].as_bool().unwrap());
                assert_eq!(unpad(&r).unwrap(), &msg[..]);
            }
        }
        "unpad" => {
            let padded = hexv(&i["padded_hex"]);
            match e.get("error") {
                Some(err) => {
                    assert_eq!(s(err), "CryptoInvalidMsgError");
                    assert_eq!(unpad(&padded), Err(PadError::InvalidMsg), "{name}");
                }
                None => assert_eq!(unpad(&padded).unwrap(), &expected_bytes()[..], "{name}"),
            }
        }
        "padlazy" => {
            let msg = msg_of(i);
            let r = pad_lazy(&msg, u(&i["msg_len"]), u(&i["padded_len"]));
            if let Some(err) = e.get("error") {
                assert_eq!(s(err), "CryptoLargeMsgError");
                assert_eq!(r, Err(PadError::LargeMsg), "{name}");
            } else if let Some(b) = e.get("bytes_hex") {
                let r = r.unwrap();
                assert_eq!(r, hexv(b), "{name}");
                assert_eq!(unpad_lazy(&r).unwrap(), &msg[..]);
            } else {
                let r = r.unwrap();
                let want: Vec<u8> = match name {
                    "padlazy.truncate" => vec![b'a'; 9000],
                    "padlazy.overlong_len" => {
                        let mut v = vec![b'a'; 10000];
                        v.extend(vec![b'#'; 92]);
                        v
                    }
                    _ => panic!("unhandled {name}"),
                };
                assert_eq!(unpad_lazy(&r).unwrap(), &want[..], "{name}");
            }
        }
        "unpadlazy" => {
            let padded = hexv(&i["padded_hex"]);
            match e.get("error") {
                Some(err) => {
                    assert_eq!(s(err), "CryptoInvalidMsgError");
                    assert_eq!(unpad_lazy(&padded), Err(PadError::InvalidMsg), "{name}");
                }
                None => assert_eq!(
                    unpad_lazy(&padded).unwrap(),
                    &expected_bytes()[..],
                    "{name}"
                ),
            }
        }
        "base64url" => {
            if let Some(t) = e.get("parsed_prefix_text") {
                let text = s(&i["text"]);
                let (v, rest) = base64url_token(text).unwrap();
                assert_eq!(v, base64url_decode(s(t)).unwrap(), "{name}");
                assert_eq!(rest, &text[s(t).len()..]);
                assert!(base64url_token("+abc").is_err());
            } else if let Some(t) = e.get("text") {
                let b = hexv(&i["bytes_hex"]);
                assert_eq!(base64url_encode(&b), s(t), "{name}");
                assert_eq!(base64url_decode(s(t)).unwrap(), b);
                assert_eq!(base64url_decode(s(t).trim_end_matches('=')).unwrap(), b);
            } else {
                let b = hexv(&e["bytes_hex"]);
                assert_eq!(base64url_decode(s(&i["text"])).unwrap(), b, "{name}");
                assert_eq!(base64url_encode(&b), s(&i["text"]));
            }
        }
        _ => return false,
    }
    true
}

#[test]
fn all_encoding_vectors() {
    let vs = load("encoding.json");
    let mut n = 0;
    for v in &vs {
        let name = s(&v["name"]);
        assert!(
            check(name, &v["inputs"], &v["expected"]),
            "unhandled vector {name}"
        );
        n += 1;
    }
    assert_eq!(n, vs.len());
    assert!(n >= 61, "expected at least 61 encoding vectors, got {n}");
}
