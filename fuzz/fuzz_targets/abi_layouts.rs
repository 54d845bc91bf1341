//! The byte layouts of the ABI (`protocols/abi`): the same arbitrary bytes are parsed as a
//! §5.1 header map, a §5.2 pairs buffer and the three §5.3–§5.5 codec buffers. Parsing never
//! panics; whatever parses re-encodes to something that parses to the same value (and, where
//! the layout has one encoding, to the very bytes parsed); the SDK's allocation-free header
//! section scan agrees with the map decoder on every input.

#![no_main]

use codec_abi::{
    decode_pairs, encode_pairs, pairs_len, write_decode_result, write_encode_result,
    write_host_command, DecodeExtras, DecodeResultView, EncodeResultView, HeaderMap,
    HostCommandView, DECODE_EXTRAS_LEN, DECODE_RESULT_FIXED_LEN, ENCODE_RESULT_FIXED_LEN,
    HOST_COMMAND_FIXED_LEN,
};
use codec_sdk::header_section;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    header_map(data);
    pairs(data);
    host_command(data);
    decode_result(data);
    encode_result(data);
});

fn header_map(data: &[u8]) {
    let decoded = HeaderMap::decode(data);
    let scan = header_section::scan(data);
    let map = match decoded {
        Ok(map) => map,
        Err(err) => {
            assert_eq!(scan, Err(err), "scan and decode disagree on a bad section");
            return;
        }
    };
    let scan = scan.expect("scan accepts what decode accepts");
    assert_eq!(scan.pairs, map.len());
    let mut enc = Vec::new();
    map.encode_into(&mut enc);
    assert_eq!(enc.len(), map.encoded_len());
    assert_eq!(HeaderMap::decode(&enc).as_ref(), Ok(&map));
    if scan.is_canonical() {
        assert_eq!(
            enc, data,
            "a section without absent pairs re-encodes byte for byte"
        );
    } else {
        assert!(enc.len() < data.len());
    }
    // Edits keep the map encodable: replace, add and remove one key.
    let mut edited = map.clone();
    if let Some((k, _)) = map.iter().next() {
        let k = k.to_vec();
        edited.insert(k.clone(), &b"replaced"[..]);
        assert_eq!(edited.get(&k), Some(&b"replaced"[..]));
        assert_eq!(edited.len(), map.len());
        assert!(edited.remove(&k));
        assert_eq!(edited.get(&k), None);
    }
    edited.insert(&b"x-fuzz"[..], data);
    let mut enc = Vec::new();
    edited.encode_into(&mut enc);
    assert_eq!(HeaderMap::decode(&enc), Ok(edited));
}

fn pairs(data: &[u8]) {
    let Ok(pairs) = decode_pairs(data) else {
        return;
    };
    let enc = encode_pairs(&pairs);
    assert_eq!(enc.len(), pairs_len(&pairs));
    assert!(
        enc.len() <= data.len(),
        "an encoding longer than what it came from"
    );
    assert_eq!(decode_pairs(&enc).expect("encoded pairs parse"), pairs);
    // With zero terminators and nothing after the last pair, the layout has one encoding.
    if !pairs.is_empty() && data.len() == enc.len() && terminators_are_zero(data, &pairs) {
        assert_eq!(enc, data);
    }
}

/// The §5.2 terminator after each key and value is 0.
fn terminators_are_zero(data: &[u8], pairs: &[(&[u8], &[u8])]) -> bool {
    let mut at = 4 + 8 * pairs.len();
    pairs.iter().all(|(k, v)| {
        let key_end = at + k.len();
        let value_end = key_end + 1 + v.len();
        at = value_end + 1;
        data[key_end] == 0 && data[value_end] == 0
    })
}

fn host_command(data: &[u8]) {
    let Ok(v) = HostCommandView::parse(data) else {
        return;
    };
    let len = HOST_COMMAND_FIXED_LEN + v.headers.len() + v.payload.len();
    let mut enc = Vec::new();
    write_host_command(
        &mut enc,
        v.headers,
        v.flag,
        v.replaced_id,
        v.command_id,
        v.timeout_or_status,
        v.payload,
    );
    assert_eq!(
        enc,
        data[..len],
        "the parsed fields are a prefix of the input"
    );
    assert_eq!(HostCommandView::parse(&enc), Ok(v));
}

fn decode_result(data: &[u8]) {
    let Ok(v) = DecodeResultView::parse(data) else {
        return;
    };
    let len = DECODE_RESULT_FIXED_LEN + v.headers.len() + v.payload.len();
    assert_eq!(v.payload_offset + v.payload.len(), len);
    assert_eq!(&data[v.payload_offset..len], v.payload);
    let mut enc = Vec::new();
    write_decode_result(
        &mut enc,
        v.headers,
        v.flag,
        v.id,
        v.timeout_or_status,
        v.drain,
        v.payload,
    );
    assert_eq!(
        enc,
        data[..len],
        "the parsed fields are a prefix of the input"
    );
    // Extras are read exactly when exactly their bytes follow.
    assert_eq!(v.extras, DecodeExtras::parse(&data[len..]));
    assert_eq!(v.extras.is_some(), data.len() == len + DECODE_EXTRAS_LEN);
    if let Some(extras) = v.extras {
        extras.write(&mut enc);
    }
    assert_eq!(DecodeResultView::parse(&enc), Ok(v));
}

fn encode_result(data: &[u8]) {
    let Ok(v) = EncodeResultView::parse(data) else {
        return;
    };
    let end = v.frame_offset + v.frame.len();
    assert!(end <= data.len());
    assert_eq!(&data[v.frame_offset..end], v.frame);
    // The writer sends no header map: the same fields, the frame right after the fixed part.
    let mut enc = Vec::new();
    write_encode_result(&mut enc, v.flag, v.id, v.timeout_or_status, v.frame);
    assert_eq!(enc.len(), ENCODE_RESULT_FIXED_LEN + v.frame.len());
    let again = EncodeResultView::parse(&enc).expect("a written encode result parses");
    assert_eq!(
        (again.flag, again.id, again.timeout_or_status, again.frame),
        (v.flag, v.id, v.timeout_or_status, v.frame)
    );
    assert_eq!(again.frame_offset, ENCODE_RESULT_FIXED_LEN);
    if data.get(..4) == Some(&[0; 4]) {
        assert_eq!(enc, data[..end]);
    }
}
