//! Generates the Rust types from `proto/` with protox (a pure-Rust protobuf compiler), so no
//! system `protoc` is needed. Every control message derives `serde::Serialize`: that is the JSON
//! contract of `p2pctl --json` (field names as in the proto, bytes as base64 and enums by name,
//! as the proto3 JSON mapping has them; see `src/json.rs`).
use prost_types::field_descriptor_proto::Type;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/p2pd/control.proto", "proto/p2pd/wire.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let mut config = prost_build::Config::new();
    config
        // Block data arrives in 1 MiB frames: decoded as a slice of the frame, not a copy (on
        // the wire, a chunk is a block answer's data inside a signed message's payload, or
        // from envelope version 4 its body).
        .bytes([
            ".p2pd.control.BlockData.data",
            ".p2pd.control.BlockPutRequest.data",
            ".p2pd.wire.SignedMessage.payload",
            ".p2pd.wire.SignedMessage.body",
            ".p2pd.wire.Block.data",
        ])
        .type_attribute(".p2pd.control", "#[derive(serde::Serialize)]");
    for file in descriptors
        .file
        .iter()
        .filter(|f| f.package() == "p2pd.control")
    {
        let mut messages: Vec<(String, &prost_types::DescriptorProto)> = file
            .message_type
            .iter()
            .map(|m| (format!(".p2pd.control.{}", m.name()), m))
            .collect();
        while let Some((path, m)) = messages.pop() {
            for nested in &m.nested_type {
                messages.push((format!("{path}.{}", nested.name()), nested));
            }
            for field in &m.field {
                let at = format!("{path}.{}", field.name());
                match field.r#type() {
                    Type::Bytes => {
                        config.field_attribute(
                            at,
                            "#[serde(serialize_with = \"crate::json::base64\")]",
                        );
                    }
                    Type::Enum => {
                        // `.p2pd.control.TrustRequest.Action` -> `crate::json::trust_request_action`
                        let name = field
                            .type_name()
                            .trim_start_matches(".p2pd.control.")
                            .replace('.', "_");
                        let function = snake(&name);
                        config.field_attribute(
                            at,
                            format!("#[serde(serialize_with = \"crate::json::{function}\")]"),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    // The descriptors themselves, for the test that every field reaches the JSON.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptors.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    config.compile_fds(descriptors)?;
    Ok(())
}

/// `TrustRequest_Action` -> `trust_request_action`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
