//! What `dht provide` and `dht providers` name: content, as other libp2p implementations (Kubo,
//! js-libp2p, go-libp2p) do — a CID (v0 `Qm...`, or v1 in any multibase, `bafy...`) or a
//! multihash in hex — keyed in the DHT by its multihash, so provider records interoperate.
//! A raw key (any bytes, p2pd's earlier behaviour) is asked for explicitly with `--raw`.

use cid::multihash::Multihash;
use cid::Cid;

/// Multicodec `raw`: the codec a bare multihash is shown with as a CIDv1.
const RAW: u64 = 0x55;

/// A parsed content key: the bytes the DHT uses and how to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentKey {
    /// The DHT key: the multihash (or the raw bytes).
    pub key: Vec<u8>,
    /// The CID to print (`None` for a raw key).
    pub cid: Option<Cid>,
}

impl ContentKey {
    /// `text` as a CID or hex multihash; with `raw`, its bytes as they are.
    pub fn parse(text: &str, raw: bool) -> Result<ContentKey, String> {
        if raw {
            return Ok(ContentKey {
                key: text.as_bytes().to_vec(),
                cid: None,
            });
        }
        let cid = match Cid::try_from(text) {
            Ok(c) => c,
            Err(cid_error) => {
                let mh = from_hex(text).ok_or_else(|| {
                    format!(
                        "{text:?} is not a CID ({cid_error}) nor a multihash in hex; give a CID such as bafy... or Qm..., a multihash such as 1220<64 hex digits>, or --raw to use the text itself as the key"
                    )
                })?;
                Cid::new_v1(RAW, mh)
            }
        };
        Ok(ContentKey {
            key: cid.hash().to_bytes(),
            cid: Some(cid),
        })
    }

    /// The CID as given (v0 stays v0), or the raw key as text.
    pub fn show(&self) -> String {
        match &self.cid {
            Some(c) => c.to_string(),
            None => String::from_utf8_lossy(&self.key).into_owned(),
        }
    }
}

/// A multihash written in hex (code, length, digest), checked whole.
fn from_hex(text: &str) -> Option<Multihash<64>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() || text.is_empty() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect();
    let bytes = bytes?;
    let mh = Multihash::<64>::from_bytes(&bytes).ok()?;
    (mh.to_bytes() == bytes).then_some(mh)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dag-pb CIDv0 (Kubo's `ipfs add` of "hello world\n").
    const V0: &str = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";

    #[test]
    fn cid_v0_and_v1_of_the_same_content_are_the_same_key() {
        let a = ContentKey::parse(V0, false).unwrap();
        // The same content as CIDv1 (dag-pb, base32), as Kubo prints it with --cid-version 1.
        let v1 = Cid::new_v1(0x70, *Cid::try_from(V0).unwrap().hash()).to_string();
        assert!(v1.starts_with("bafybei"), "{v1}");
        let b = ContentKey::parse(&v1, false).unwrap();

        assert_eq!(a.key, b.key);
        assert_eq!(a.key.len(), 34);
        assert_eq!(&a.key[..2], &[0x12, 0x20]);
        assert_eq!(a.show(), V0);
        assert_eq!(b.show(), v1);
    }

    #[test]
    fn a_hex_multihash_is_the_same_key_and_shows_as_a_raw_cid() {
        let a = ContentKey::parse(V0, false).unwrap();
        let hex: String = a.key.iter().map(|b| format!("{b:02x}")).collect();
        let h = ContentKey::parse(&hex, false).unwrap();
        assert_eq!(h.key, a.key);
        assert!(h.show().starts_with("bafk"), "{}", h.show());
        // A digest length that does not match is not a multihash.
        assert!(ContentKey::parse(&hex[..hex.len() - 2], false).is_err());
    }

    #[test]
    fn anything_else_needs_raw() {
        let e = ContentKey::parse("some-content", false).unwrap_err();
        assert!(e.contains("--raw"), "{e}");
        let r = ContentKey::parse("some-content", true).unwrap();
        assert_eq!(r.key, b"some-content");
        assert_eq!(r.show(), "some-content");
    }
}
