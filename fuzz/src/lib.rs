//! What the fuzz targets share: the wire properties, checked the same way for all five kinds.
//!
//! Every target asserts properties with `assert!`/`expect`: a failed assertion is a panic,
//! which libFuzzer reports as a crash with the input that caused it.

use std::fmt::Debug;

use shoal_model::wire::{decode, encode, Envelope, Limits, Message, WireError, WIRE_VERSION};

/// Feeds `data` to the wire decoders of `M`, twice:
///
/// 1. as the bytes of an MQTT payload: [`Envelope::decode`] and [`decode`] never panic, and
///    whatever they accept survives the round trip (re-encoding succeeds under the same limits,
///    decoding that gives the same value);
/// 2. as the payload inside a well-formed envelope, so mutations reach
///    [`Envelope::open`] and the message's checks without first having to keep the envelope
///    around them intact.
pub fn wire<M: Message + PartialEq + Debug>(data: &[u8]) {
    let limits = Limits::default();
    as_mqtt_payload::<M>(data, &limits);
    as_message_payload::<M>(data, &limits);
}

fn as_mqtt_payload<M: Message + PartialEq + Debug>(data: &[u8], limits: &Limits) {
    if let Ok(envelope) = Envelope::decode(data, M::KIND, limits) {
        let bytes = envelope
            .encode(limits)
            .expect("an envelope that decodes re-encodes under the same limits");
        assert!(
            bytes.len() <= data.len(),
            "re-encoding grew the envelope from {} to {} bytes",
            data.len(),
            bytes.len()
        );
        let again =
            Envelope::decode(&bytes, M::KIND, limits).expect("a re-encoded envelope decodes again");
        assert_eq!(again, envelope, "the envelope changed in the round trip");
    }
    if let Ok((envelope, message)) = decode::<M>(data, limits) {
        // The whole envelope, signature included, as the hub would republish it.
        let bytes = envelope
            .encode(limits)
            .expect("a decoded envelope re-encodes");
        let (again_envelope, again) =
            decode::<M>(&bytes, limits).expect("a re-encoded message decodes again");
        assert_eq!(again, message, "the message changed in the round trip");
        assert_eq!(again_envelope, envelope);
        // And the message alone, freshly sealed, as a publisher would send it.
        let fresh = encode(&envelope.node_id, &message, limits)
            .expect("a message that decodes is one that encodes");
        let (fresh_envelope, again) =
            decode::<M>(&fresh, limits).expect("a freshly encoded message decodes");
        assert_eq!(again, message, "the message changed when sealed afresh");
        assert_eq!(fresh_envelope.node_id, envelope.node_id);
        assert_eq!(fresh_envelope.generation, envelope.generation);
        assert_eq!(fresh_envelope.signature, None);
    }
}

fn as_message_payload<M: Message + PartialEq + Debug>(data: &[u8], limits: &Limits) {
    // Address the envelope to whatever node the payload names, if it decodes, so the node
    // and generation checks do not stop every input before `check` runs.
    let (node_id, generation) = match M::from_payload(WIRE_VERSION, data) {
        Ok(message) => (
            message.node_id().unwrap_or("fuzz-node").to_string(),
            message.generation(),
        ),
        Err(_) => ("fuzz-node".to_string(), 0),
    };
    let envelope = Envelope {
        version: WIRE_VERSION,
        kind: M::KIND,
        node_id,
        generation,
        payload: data.to_vec(),
        signature: None,
    };
    let Ok(message) = envelope.open::<M>() else {
        return;
    };
    let sealed = Envelope::seal(&envelope.node_id, &message)
        .expect("a message that opens is one that seals");
    assert_eq!(sealed.generation, envelope.generation);
    match sealed.encode(limits) {
        Ok(bytes) => {
            let (_, again) = decode::<M>(&bytes, limits).expect("an encoded message decodes");
            assert_eq!(again, message, "the message changed in the round trip");
        }
        // A payload near the limit may not fit once wrapped; that is the encoder's to refuse.
        Err(WireError::TooLarge { .. }) => {}
        Err(other) => panic!("a message that opens fails to encode: {other}"),
    }
}
