//! Hostile input to everything that decodes what a peer or a user wrote:
//! wire messages, signed envelopes, capability tokens, sealed buckets and the
//! job-spec parsers. Each property feeds arbitrary or corrupted input and
//! asserts a clean refusal: no panic, and nothing forged is ever accepted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use tormr_core::identity::{Identity, Signed};
use tormr_core::ids::{BucketId, JobId};
use tormr_core::seal::{BucketKey, open_bytes, seal_bytes};
use tormr_core::spec::streaming::{StepFlags, limits_from_conf, parse_size, step_from_flags};
use tormr_core::spec::{mrjob, pachyderm};
use tormr_core::token::{Capability, TokenSecret, Verb};
use tormr_core::wire::bulletin::{
    ClusterRequest, JoinTicket, PostRequest, Register, Registration, Requirements, TicketAnswer,
};
use tormr_core::wire::job::{Heartbeat, Join, Lease, LeaseAnswer, Report, TaskAssignment};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Decoding may fail, never panic.
fn decode<T: DeserializeOwned>(bytes: &[u8]) {
    let _ = serde_json::from_slice::<T>(bytes);
}

fn every_wire_message(bytes: &[u8]) {
    decode::<Register>(bytes);
    decode::<PostRequest>(bytes);
    decode::<TicketAnswer>(bytes);
    decode::<JoinTicket>(bytes);
    decode::<Join>(bytes);
    decode::<Lease>(bytes);
    decode::<LeaseAnswer>(bytes);
    decode::<TaskAssignment>(bytes);
    decode::<Heartbeat>(bytes);
    decode::<Report>(bytes);
    decode::<mrjob::MrjobDescription>(bytes);
}

/// JSON-shaped noise: nested objects and arrays with keys the messages use.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("payload".to_owned()),
        Just("signer".to_owned()),
        Just("signature".to_owned()),
        Just("task".to_owned()),
        Just("lease".to_owned()),
        Just("buckets".to_owned()),
        Just("outcome".to_owned()),
        Just("steps".to_owned()),
        Just("transform".to_owned()),
        "[a-z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn signed_registration() -> Signed<Registration> {
    let id = Identity::generate();
    let reg: Registration = serde_json::from_value(serde_json::json!({
        "capabilities": {"cores": 2, "memory_mb": 1024, "executors": ["process"]},
        "trusted_by": null,
        "discovery_key": null,
        "issued_at": 1_700_000_000u64,
    }))
    .expect("a valid registration");
    Signed::sign(&id, &reg)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        every_wire_message(&bytes);
    }

    #[test]
    fn json_shaped_noise_never_panics_a_decoder(value in json_value()) {
        every_wire_message(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn a_signed_message_with_any_byte_changed_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let signed = signed_registration();
        let original = serde_json::to_vec(&signed).unwrap();
        let mut wire = original.clone();
        let i = at.index(wire.len());
        wire[i] ^= flip;
        if let Ok(changed) = serde_json::from_slice::<Signed<Registration>>(&wire) {
            // An envelope that still decodes opens only if it re-encodes to
            // the original (the flip hit nothing significant, e.g. a letter
            // case in base64 padding that decodes alike).
            let same = serde_json::to_vec(&changed).unwrap() == original;
            prop_assert!(changed.open().is_err() || same, "a changed envelope opened (byte {})", i);
        }
    }

    #[test]
    fn tokens_refuse_forgery_tampering_and_the_wrong_scope(
        noise in ".{0,120}",
        at in any::<prop::sample::Index>(),
        flip in 1u8..=127,
    ) {
        let secret = TokenSecret::random();
        let job = JobId::random();
        let bucket = BucketId::input(3);
        prop_assert!(secret.verify(&noise, 0).is_err());
        let cap = Capability { job: job.clone(), bucket: Some(bucket.clone()), verb: Verb::Get, expires: 2_000 };
        let token = secret.mint(&cap);
        let mut bytes = token.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(tampered) = String::from_utf8(bytes) {
            prop_assert!(secret.verify(&tampered, 1_000).is_err(), "a token changed at byte {} was accepted", i);
        }
        // Another data layer's token, an expired one, another verb, bucket or job.
        prop_assert!(TokenSecret::random().verify(&token, 1_000).is_err());
        prop_assert!(secret.verify(&token, 2_001).is_err());
        prop_assert!(secret.check(&token, &job, Some(&bucket), Verb::Put, 1_000).is_err());
        prop_assert!(secret.check(&token, &job, Some(&BucketId::input(4)), Verb::Get, 1_000).is_err());
        prop_assert!(secret.check(&token, &JobId::random(), Some(&bucket), Verb::Get, 1_000).is_err());
        prop_assert!(secret.check(&token, &job, Some(&bucket), Verb::Get, 1_000).is_ok());
    }

    #[test]
    fn a_sealed_bucket_opens_only_untouched_and_with_its_own_key_and_name(
        plain in prop::collection::vec(any::<u8>(), 0..4096),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        cut in any::<prop::sample::Index>(),
    ) {
        let key = BucketKey::random();
        let job = JobId::random();
        let bucket = BucketId::input(0);
        let (sealed, _) = seal_bytes(&plain, &key, &job, &bucket).unwrap();
        prop_assert_eq!(open_bytes(&sealed, &key, &job, &bucket).unwrap(), plain);

        let mut flipped = sealed.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= flip;
        prop_assert!(open_bytes(&flipped, &key, &job, &bucket).is_err(), "a flipped byte at {} was accepted", i);

        let short = &sealed[..cut.index(sealed.len())];
        prop_assert!(open_bytes(short, &key, &job, &bucket).is_err(), "a bucket cut to {} bytes was accepted", short.len());

        prop_assert!(open_bytes(&sealed, &BucketKey::random(), &job, &bucket).is_err());
        prop_assert!(open_bytes(&sealed, &key, &JobId::random(), &bucket).is_err());
        prop_assert!(open_bytes(&sealed, &key, &job, &BucketId::input(1)).is_err());
    }

    #[test]
    fn random_bytes_never_open_as_a_bucket(noise in prop::collection::vec(any::<u8>(), 0..2048)) {
        let key = BucketKey::random();
        prop_assert!(open_bytes(&noise, &key, &JobId::random(), &BucketId::input(0)).is_err());
    }

    #[test]
    fn streaming_flags_and_settings_never_panic(
        mapper in proptest::option::of(".{0,40}"),
        reducer in proptest::option::of(prop_oneof![Just("NONE".to_owned()), ".{0,40}"]),
        combiner in proptest::option::of(".{0,20}"),
        reduces in proptest::option::of(any::<u32>()),
        partitioner in proptest::option::of(prop_oneof![
            Just("org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner".to_owned()),
            ".{0,30}",
        ]),
        conf in prop::collection::btree_map(
            prop_oneof![
                Just("stream.num.map.output.key.fields".to_owned()),
                Just("stream.map.output.field.separator".to_owned()),
                Just("mapreduce.partition.keypartitioner.options".to_owned()),
                Just("mapreduce.job.reduces".to_owned()),
                Just("mapreduce.map.maxattempts".to_owned()),
                Just("tormr.bucket.bytes".to_owned()),
                Just("tormr.verify.p_min".to_owned()),
                Just("tormr.verify.arbitration".to_owned()),
                Just("mapreduce.task.timeout".to_owned()),
                "[a-z.]{1,30}",
            ],
            ".{0,24}",
            0..6,
        ),
        size in ".{0,16}",
    ) {
        let flags = StepFlags { mapper, combiner, reducer, num_reduce_tasks: reduces, partitioner };
        let _ = step_from_flags(&flags, &conf);
        let _ = limits_from_conf(&conf);
        let _ = parse_size(&size);
    }

    #[test]
    fn pachyderm_specs_never_panic_the_parser(text in ".{0,400}", value in json_value()) {
        let _ = pachyderm::parse(&text);
        let _ = pachyderm::parse(&serde_json::to_string(&value).unwrap());
        // Valid YAML of the right shape with hostile values.
        let _ = pachyderm::parse(&format!(
            "pipeline:\n  name: {text:?}\ntransform:\n  cmd: [{text:?}]\ninput:\n  pfs:\n    repo: r\n    glob: {text:?}\n"
        ));
    }

    #[test]
    fn mrjob_step_descriptions_never_panic_the_planner(steps in prop::collection::vec(json_value(), 0..4), conf in json_value()) {
        let desc = serde_json::json!({ "steps": steps, "jobconf": conf });
        if let Ok(desc) = serde_json::from_value::<mrjob::MrjobDescription>(desc) {
            let script = mrjob::ShippedFile { path: "/tmp/job.py".into(), name: "job.py".into() };
            let _ = mrjob::plan(&desc, &script, "python3");
        }
    }
}

#[test]
fn a_cluster_request_signed_by_one_key_does_not_open_as_another() {
    let job = Identity::generate();
    let request = ClusterRequest {
        job_address: "127.0.0.1:1".into(),
        workers: 1,
        min_workers: 1,
        wait_secs: 0,
        requirements: Requirements::default(),
        issued_at: 1_700_000_000,
        owner: None,
    };
    let signed = Signed::sign(&job, &request);
    assert!(signed.open_by(&job.public()).is_ok());
    assert!(signed.open_by(&Identity::generate().public()).is_err());
}
