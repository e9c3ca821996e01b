"""A gRPC client for tests, against origin.py's `ringtun.test.Echo` (directly, or through an
edge that speaks HTTP/2 to public clients).

Usage: client.py TARGET METHOD ARG [--authority HOST] [--tls CA_PEM] [--server-name NAME]

TARGET is host:port; METHOD one of Unary, Fail, Stream, Upload; ARG the request (for Stream a
count, for Upload a comma-separated list of message sizes). --authority sets the :authority
(the hostname an edge routes on); --tls connects with TLS trusting CA_PEM (else h2c);
--server-name is the name the server's certificate is checked against (default: TARGET's host).

Prints one JSON object: {"code": "OK" | status name, "details": str, "messages": [str, ...]}
and exits 0 whatever the status (the caller checks it).
"""

import json
import sys

import grpc

SERVICE = "/ringtun.test.Echo/"


def main():
    target, method, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    opts = sys.argv[4:]
    options = []
    ca = None
    while opts:
        flag = opts.pop(0)
        if flag == "--authority":
            options.append(("grpc.default_authority", opts.pop(0)))
        elif flag == "--server-name":
            options.append(("grpc.ssl_target_name_override", opts.pop(0)))
        elif flag == "--tls":
            with open(opts.pop(0), "rb") as f:
                ca = f.read()
        else:
            sys.exit("unknown flag " + flag)
    if ca is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca), options=options)
    out = {"code": "OK", "details": "", "messages": []}
    try:
        if method == "Stream":
            call = channel.unary_stream(SERVICE + method)
            for m in call(arg.encode(), timeout=30):
                out["messages"].append(m.decode())
        elif method == "Upload":
            call = channel.stream_unary(SERVICE + method)
            sizes = [int(s) for s in arg.split(",") if s]
            out["messages"].append(call(iter([b"x" * n for n in sizes]), timeout=30).decode())
        else:
            call = channel.unary_unary(SERVICE + method)
            out["messages"].append(call(arg.encode(), timeout=30).decode())
    except grpc.RpcError as e:
        out["code"] = e.code().name
        out["details"] = e.details() or ""
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
