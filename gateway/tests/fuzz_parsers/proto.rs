//! The hub's messages as the gateway reads them: arbitrary bytes decoded as a `Downlink`
//! never panic, and what decodes re-encodes to a message that decodes to the same value;
//! a decoded command, dispatched, always comes back as a result for that command.

use gatehouse_gateway::adapters::CommandRouter;
use gatehouse_proto::{self as pb, downlink};
use proptest::prelude::*;
use prost::Message as _;

use crate::cases;

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn arbitrary_bytes_decode_as_downlink_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(d) = pb::Downlink::decode(bytes.as_slice()) {
            let again = pb::Downlink::decode(d.encode_to_vec().as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, d);
        }
    }

    #[test]
    fn a_decoded_command_always_gets_a_result_for_itself(
        command_id in "\\PC{0,16}", device_id in "\\PC{0,16}", action in "\\PC{0,8}", deadline_ms in any::<i64>(),
        noise in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let cmd = pb::Command { command_id, device_id, action, arguments: Default::default(), deadline_ms };
        let mut bytes = pb::Downlink { msg: Some(downlink::Msg::Command(cmd.clone())) }.encode_to_vec();
        // Unknown fields after a message are skipped by protobuf, or make it fail whole.
        bytes.extend_from_slice(&noise);
        let Ok(pb::Downlink { msg: Some(downlink::Msg::Command(c)) }) = pb::Downlink::decode(bytes.as_slice()) else {
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        // No device is routed: the command fails with a result naming it, never panics.
        let result = rt.block_on(CommandRouter::default().dispatch(c.clone()));
        prop_assert_eq!((&result.command_id, &result.device_id, result.ok), (&c.command_id, &c.device_id, false));
    }
}
