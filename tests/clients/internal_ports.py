"""Calls a cluster's internal ports as a stranger would, with pyarrow's Flight client and a
raw gRPC client (grpcio, no stubs: method paths and raw protobuf bytes), and as a member
would, with a proof of the cluster secret made here with hashlib (an implementation
independent of the server's; the scheme is in common/src/cluster_auth.rs).

usage: internal_ports.py < spec.json
spec: {"leader_grpc": ["host:port", ...], "compute_flight": ["host:port", ...],
       "secret_file": path, "bad_plan": path, "good_plan": path}
(bad_plan / good_plan: StartStage messages whose plans scan /etc/passwd / select a constant)

Prints one JSON object: for each call, "unauthenticated" or what happened instead.
"""

import hashlib
import hmac
import json
import os
import sys
import time

import grpc
import pyarrow as pa
import pyarrow.flight as flight

HEADER = "x-blueshift-cluster-proof"
CONTEXT = b"blueshift-cluster-v1"


def proof(secret: bytes) -> str:
    key = hashlib.sha256(CONTEXT + b"\0" + secret.strip()).digest()
    timestamp = str(int(time.time() * 1000))
    nonce = os.urandom(16).hex()
    message = CONTEXT + b"|" + timestamp.encode() + b"|" + nonce.encode()
    tag = hmac.new(key, message, "sha256").hexdigest()
    return f"v1.{timestamp}.{nonce}.{tag}"


def flight_outcome(call) -> str:
    try:
        call()
        return "ok"
    except flight.FlightUnauthenticatedError:
        return "unauthenticated"
    except Exception as e:  # noqa: BLE001 - what happened is the answer
        return f"{type(e).__name__}: {' '.join(str(e).split())}"


def flight_calls(addr: str, headers) -> dict:
    client = flight.FlightClient(f"grpc://{addr}")
    options = flight.FlightCallOptions(headers=headers, timeout=10)
    out = {}
    out["list_actions"] = flight_outcome(lambda: list(client.list_actions(options=options)))
    out["do_get"] = flight_outcome(
        lambda: client.do_get(flight.Ticket(b"\x0a\x01q"), options=options).read_all()
    )

    def put():
        schema = pa.schema([("a", pa.int32())])
        descriptor = flight.FlightDescriptor.for_command(b"")
        writer, _reader = client.do_put(descriptor, schema, options=options)
        writer.write_table(pa.table({"a": pa.array([1], pa.int32())}))
        writer.close()

    out["do_put"] = flight_outcome(put)
    out["do_action"] = flight_outcome(
        lambda: list(client.do_action(flight.Action("start_stage", b""), options=options))
    )
    client.close()
    return out


def grpc_outcome(addr: str, method: str, metadata) -> str:
    with grpc.insecure_channel(addr) as channel:
        call = channel.unary_unary(
            method,
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        try:
            call(b"", metadata=metadata, timeout=10)
            return "ok"
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                return "unauthenticated"
            return f"{e.code().name}: {e.details()}"


LEADER_METHODS = [
    "/blueshift.v1.Cluster/Register",
    "/blueshift.v1.Cluster/Heartbeat",
    "/blueshift.v1.Cluster/Leave",
    "/blueshift.v1.Raft/Send",
    "/blueshift.v1.Raft/Describe",
    "/blueshift.v1.Raft/ChangeMembership",
]


def main() -> None:
    spec = json.load(sys.stdin)
    with open(spec["secret_file"], "rb") as f:
        secret = f.read()
    strangers = {
        "none": ([], []),
        "wrong secret": (
            [(HEADER.encode(), proof(b"not the cluster secret at all").encode())],
            [(HEADER, proof(b"not the cluster secret at all"))],
        ),
        "garbage": ([(HEADER.encode(), b"v1.1.2.3")], [(HEADER, "v1.1.2.3")]),
    }
    results = {}
    for who, (flight_headers, grpc_metadata) in strangers.items():
        for addr in spec["compute_flight"]:
            for call, outcome in flight_calls(addr, flight_headers).items():
                results[f"{who} compute {addr} flight {call}"] = outcome
            method = "/arrow.flight.protocol.FlightService/ListActions"
            results[f"{who} compute {addr} grpc ListActions"] = grpc_outcome(
                addr, method, grpc_metadata
            )
        for addr in spec["leader_grpc"]:
            for method in LEADER_METHODS:
                results[f"{who} leader {addr} grpc {method}"] = grpc_outcome(
                    addr, method, grpc_metadata
                )
            results[f"{who} leader {addr} flight list_actions"] = flight_outcome(
                lambda: list(
                    flight.FlightClient(f"grpc://{addr}").list_actions(
                        options=flight.FlightCallOptions(headers=flight_headers, timeout=10)
                    )
                )
            )

    # A member: the proof is accepted; a plan that scans a file is refused all the same.
    member = {}
    compute = spec["compute_flight"][0]
    client = flight.FlightClient(f"grpc://{compute}")

    def options():
        return flight.FlightCallOptions(
            headers=[(HEADER.encode(), proof(secret).encode())], timeout=10
        )

    member["list_actions"] = flight_outcome(lambda: list(client.list_actions(options=options())))
    for name in ["bad_plan", "good_plan"]:
        with open(spec[name], "rb") as f:
            body = f.read()
        member[name] = flight_outcome(
            lambda: list(client.do_action(flight.Action("start_stage", body), options=options()))
        )
    member["leader Describe"] = grpc_outcome(
        spec["leader_grpc"][0],
        "/blueshift.v1.Raft/Describe",
        [(HEADER, proof(secret))],
    )
    print(json.dumps({"strangers": results, "member": member}))


if __name__ == "__main__":
    main()
