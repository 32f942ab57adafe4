//! Parsing NTF commands as the server receives them: hush-proto's [`NtfCommand`], with the device
//! of `TNEW`/`TRPL` resolved. hush's split-mode provider `PH` ([`PushProvider::PushHandle`]) names
//! a push handle instead of a device token; it becomes [`Device::Handle`].

use hush_proto::error::{CommandError, ErrorType};
use hush_proto::ntf::{DeviceToken, NtfCommand, PushProvider};

use crate::store::Device;

/// A parsed command with the device of `TNEW`/`TRPL` resolved.
#[derive(Debug)]
pub struct ServerCommand {
    pub cmd: NtfCommand,
    /// For `TNEW` / `TRPL`: where pushes go.
    pub device: Option<Device>,
}

/// Where pushes for `token` go: a push handle (`PH`, its text must be UTF-8) or a device token.
fn device_of(token: &DeviceToken) -> Result<Device, ErrorType> {
    if token.provider == PushProvider::PushHandle {
        String::from_utf8(token.token.clone())
            .map(Device::Handle)
            .map_err(|_| ErrorType::Cmd(CommandError::Syntax))
    } else {
        Ok(Device::Token(token.clone()))
    }
}

/// Parses a command (whole input). Errors are the reference's (`CMD UNKNOWN`, `CMD SYNTAX`).
pub fn parse_command(command: &[u8], version: u16) -> Result<ServerCommand, ErrorType> {
    let cmd = NtfCommand::parse(command, version)?;
    let device = match &cmd {
        NtfCommand::Tnew { token, .. } | NtfCommand::Trpl { token } => Some(device_of(token)?),
        _ => None,
    };
    Ok(ServerCommand { cmd, device })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_proto::encoding::Encode;

    fn vectors() -> Vec<serde_json::Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/ntf.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("ntf.json missing")).unwrap()
    }

    #[test]
    fn encode_vectors_parse_as_server_commands() {
        let mut n = 0;
        for v in vectors() {
            let name = v["name"].as_str().unwrap();
            let Some(cmd) = name.strip_prefix("encode.") else {
                continue;
            };
            let tag = cmd.split('.').next().unwrap();
            if !matches!(
                tag,
                "TNEW"
                    | "TVFY"
                    | "TCHK"
                    | "TRPL"
                    | "TDEL"
                    | "TCRN"
                    | "SNEW"
                    | "SCHK"
                    | "SDEL"
                    | "PING"
            ) {
                continue;
            }
            let bytes = v["expected"]
                .get("hex")
                .or_else(|| v["expected"].get("bytes_hex"))
                .and_then(|h| h.as_str())
                .map(|h| hex::decode(h).unwrap())
                .unwrap_or_else(|| panic!("{name}: no bytes in {}", v["expected"]));
            let c = parse_command(&bytes, 3).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(c.cmd.tag(), tag);
            let mut again = Vec::new();
            c.cmd.encode(&mut again);
            assert_eq!(again, bytes, "{name}");
            n += 1;
        }
        assert_eq!(n, 11, "NTF command encoding vectors");
    }

    #[test]
    fn push_handle_provider() {
        let tnew = parse_command(b"TCHK", 3).unwrap();
        assert!(tnew.device.is_none());
        let mut c = b"TRPL PH".to_vec();
        c.push(5);
        c.extend_from_slice(b"hAnd1");
        let r = parse_command(&c, 3).unwrap();
        assert_eq!(r.device, Some(Device::Handle("hAnd1".into())));
        let mut c = b"TRPL AT".to_vec();
        c.push(2);
        c.extend_from_slice(b"ab");
        let r = parse_command(&c, 3).unwrap();
        assert!(matches!(r.device, Some(Device::Token(_))));
        assert_eq!(
            parse_command(b"TRPL XX\x02ab", 3).unwrap_err(),
            ErrorType::Cmd(CommandError::Syntax)
        );
        // A push handle must be text.
        assert_eq!(
            parse_command(b"TRPL PH\x02\xff\xfe", 3).unwrap_err(),
            ErrorType::Cmd(CommandError::Syntax)
        );
        // The provider code is hush-proto's.
        assert_eq!(PushProvider::PushHandle.code(), b"PH");
        assert_eq!(
            parse_command(b"NOPE", 3).unwrap_err(),
            ErrorType::Cmd(CommandError::Unknown)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                        prefix in proptest::sample::select(vec![&b""[..], b"TNEW T", b"TRPL ", b"TNEW TPH", b"TRPL PH", b"SNEW S"])) {
            let mut c = prefix.to_vec();
            c.extend_from_slice(&bytes);
            let _ = parse_command(&c, 3);
        }
    }
}
