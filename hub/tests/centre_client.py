#!/usr/bin/env python3
"""An outside client of the hub's gRPC CommandCentre, driven by hub/tests/centre.rs.

Generates grpcio stubs from the proto into a temporary directory (python3 -m
grpc_tools.protoc), opens WatchAlarms and prints one JSON line per update. On the first
`raised` change it acknowledges that alarm (AcknowledgeAlarm), then tries again (the hub must
answer FAILED_PRECONDITION), and it exits once the `acknowledged` change of that alarm arrived.

usage: centre_client.py HOST:PORT PROTO_ROOT
"""

import importlib
import json
import os
import subprocess
import sys
import tempfile


def say(**line):
    print(json.dumps(line), flush=True)


def main():
    addr, proto_root = sys.argv[1], sys.argv[2]
    out = tempfile.mkdtemp(prefix="gatehouse-stubs-")
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}",
            "gatehouse/v1/gatehouse.proto",
        ],
        check=True,
    )
    sys.path.insert(0, out)
    pb = importlib.import_module("gatehouse.v1.gatehouse_pb2")
    rpc = importlib.import_module("gatehouse.v1.gatehouse_pb2_grpc")
    import grpc

    with grpc.insecure_channel(addr) as channel:
        stub = rpc.CommandCentreStub(channel)
        # Every call carries the bearer token; who acknowledged is the token's name.
        auth = [("authorization", "Bearer " + os.environ["GATEHOUSE_TOKEN"])]
        acked = None
        for u in stub.WatchAlarms(pb.WatchAlarmsRequest(estate_id="estate-a"), timeout=60, metadata=auth):
            which = u.WhichOneof("update")
            if which == "snapshot_start":
                say(kind=which, reason=u.snapshot_start.reason)
            elif which == "snapshot":
                say(kind=which, id=u.snapshot.id, device=u.snapshot.device_id, priority=u.snapshot.priority)
            elif which == "snapshot_complete":
                say(kind=which, count=u.snapshot_complete.count)
            elif which == "change":
                c = u.change
                say(kind=which, change=c.change, id=c.alarm.id, device=c.alarm.device_id,
                    acknowledged=c.alarm.acknowledged, removed=c.removed)
                if c.change == "raised" and acked is None:
                    acked = c.alarm.id
                    alarm = stub.AcknowledgeAlarm(pb.AcknowledgeAlarmRequest(alarm_id=acked, operator="py-op"), metadata=auth)
                    say(kind="acked", id=alarm.id, acked_by=alarm.acked_by)
                    try:
                        stub.AcknowledgeAlarm(pb.AcknowledgeAlarmRequest(alarm_id=acked), metadata=auth)
                        say(kind="error", code="OK")
                    except grpc.RpcError as e:
                        say(kind="error", code=e.code().name)
                elif c.change == "acknowledged" and c.alarm.id == acked:
                    return 0
            else:
                say(kind="unknown", which=str(which))
    return 1


if __name__ == "__main__":
    sys.exit(main())
