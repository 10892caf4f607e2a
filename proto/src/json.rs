//! The JSON form of the control messages: `p2pctl --json` prints the answer's message as it is
//! here, so this is a stable contract. Field names are the proto's; numbers are JSON numbers
//! (64-bit ones included); `bytes` fields are base64 (standard alphabet, padded) and enum fields
//! carry the value's proto name, as in the proto3 JSON mapping; a `oneof` is an object keyed by
//! the Rust variant name. `build.rs` attaches the functions below to every such field.

use base64::Engine;
use serde::Serializer;

/// `bytes` as base64.
pub fn base64<S: Serializer, T: AsRef<[u8]>>(data: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data.as_ref()))
}

/// An enum value by its proto name; a value this build does not know, as its number.
fn by_name<S: Serializer>(name: Option<&str>, value: i32, s: S) -> Result<S::Ok, S::Error> {
    match name {
        Some(n) => s.serialize_str(n),
        None => s.serialize_i32(value),
    }
}

pub fn error_code<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
    let name = crate::control::ErrorCode::try_from(*value).ok();
    by_name(name.map(|c| c.as_str_name()), *value, s)
}

pub fn trust_request_action<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
    let name = crate::control::trust_request::Action::try_from(*value).ok();
    by_name(name.map(|a| a.as_str_name()), *value, s)
}

#[cfg(test)]
mod tests {
    use crate::control::*;
    use prost::Message;
    use std::collections::BTreeSet;

    /// The keys of a message's JSON form.
    fn keys<T: serde::Serialize>(m: &T) -> BTreeSet<String> {
        match serde_json::to_value(m).expect("serializes") {
            serde_json::Value::Object(o) => o.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    macro_rules! every_message {
        ($($ty:ident),* $(,)?) => {
            vec![$((stringify!($ty), keys(&<$ty>::default()))),*]
        };
    }

    /// Every field of every control message appears in its JSON form under its proto name, and
    /// this test knows every message (a new one fails it until listed).
    #[test]
    fn every_field_of_every_message_is_in_the_json() {
        let listed = every_message![
            ClientFrame,
            ServerFrame,
            Hello,
            Request,
            Response,
            Error,
            Ack,
            StatusRequest,
            StatusResponse,
            AddressTest,
            PeersRequest,
            PeerConnection,
            PeerEntry,
            PeersResponse,
            ConnectRequest,
            ConnectResponse,
            DisconnectRequest,
            PeerList,
            PubsubTopicsRequest,
            PubsubTopicsResponse,
            PubsubPeersRequest,
            PubsubPublishRequest,
            PubsubPublishResponse,
            PubsubSubscribeRequest,
            PubsubMessage,
            DhtFindPeerRequest,
            DhtFindPeerResponse,
            DhtGetRequest,
            DhtGetResponse,
            DhtPutRequest,
            DhtProvideRequest,
            DhtProvidersRequest,
            DhtClosestRequest,
            BlockPutRequest,
            BlockGetRequest,
            BlockStatRequest,
            BlockVerifyRequest,
            BlockVerifyResponse,
            BlockStat,
            BlockData,
            StreamOpenRequest,
            StreamOpened,
            StreamServeRequest,
            StreamListRequest,
            StreamHandler,
            StreamList,
            StreamRemoveRequest,
            BanRequest,
            BanImportRequest,
            RejectedTarget,
            BanImportResponse,
            UnbanRequest,
            BansRequest,
            BanEntry,
            BanList,
            TrustRequest,
            TrustedPeer,
            TrustList,
            LimitsRequest,
            LimitEntry,
            LimitList,
            LimitsSetRequest,
            ReloadRequest,
            ReloadResponse,
            LogLevelRequest,
        ];
        let set = prost_types::FileDescriptorSet::decode(
            &include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"))[..],
        )
        .expect("descriptors");
        let file = set
            .file
            .iter()
            .find(|f| f.package() == "p2pd.control")
            .expect("the control package");
        let described: BTreeSet<&str> = file.message_type.iter().map(|m| m.name()).collect();
        let known: BTreeSet<&str> = listed.iter().map(|(n, _)| *n).collect();
        assert_eq!(described, known, "list every control message here");
        for m in &file.message_type {
            // Plain fields by name; the members of a oneof under the oneof's name.
            let expected: BTreeSet<String> = m
                .field
                .iter()
                .map(|f| match f.oneof_index {
                    Some(i) => m.oneof_decl[i as usize].name().to_string(),
                    None => f.name().to_string(),
                })
                .collect();
            let (_, got) = listed.iter().find(|(n, _)| *n == m.name()).expect("listed");
            assert_eq!(got, &expected, "JSON keys of {}", m.name());
        }
    }

    #[test]
    fn bytes_are_base64_and_enums_are_names() {
        let m = PubsubMessage {
            topic: "t".into(),
            data: b"hi\xff".to_vec(),
            ..Default::default()
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["data"], "aGn/");
        assert_eq!(v["seq_no"], 0);
        let e = Error {
            code: ErrorCode::NotFound as i32,
            message: "x".into(),
        };
        assert_eq!(serde_json::to_value(&e).unwrap()["code"], "NOT_FOUND");
        let e = Error {
            code: 999,
            message: "x".into(),
        };
        assert_eq!(serde_json::to_value(&e).unwrap()["code"], 999);
        let t = TrustRequest {
            action: trust_request::Action::Add as i32,
            target: "p".into(),
        };
        assert_eq!(serde_json::to_value(&t).unwrap()["action"], "ADD");
        let d = BlockData {
            data: bytes::Bytes::from_static(b"\x00\x01"),
        };
        assert_eq!(serde_json::to_value(&d).unwrap()["data"], "AAE=");
    }
}
