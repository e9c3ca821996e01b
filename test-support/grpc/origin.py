"""A real gRPC origin for the connector's tests (connector/tests/e2e_http2.rs).

No protoc: a generic handler with bytes in and out (no serialisation). Service
`ringtun.test.Echo`:

- `Unary`: answers `echo:` + the request.
- `Fail`: fails with NOT_FOUND (grpc-status 5) and the message `no such thing`, so the status
  travels only in trailers.
- `Stream` (server streaming): the request is a count N in ASCII; answers N messages `msg-I`.
- `Upload` (client streaming): answers the total size of the messages received, in ASCII.
- `Peer`: answers the client's address as gRPC sees it (`ipv4:127.0.0.1:PORT`): which
  connection a call came on.

Usage: origin.py [--tls CERT KEY]. Prints the port it listens on (127.0.0.1, h2c, or h2 over
TLS with ALPN when --tls is given) on the first line of stdout, then serves until killed.
"""

import sys
from concurrent import futures

import grpc

SERVICE = "ringtun.test.Echo"


def unary(request, context):
    return b"echo:" + request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def stream(request, context):
    for i in range(int(request.decode() or "0")):
        yield b"msg-%d" % i


def upload(requests, context):
    return str(sum(len(r) for r in requests)).encode()


def peer(request, context):
    return context.peer().encode()


def main():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
        "Upload": grpc.stream_unary_rpc_method_handler(upload),
        "Peer": grpc.unary_unary_rpc_method_handler(peer),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        with open(sys.argv[2], "rb") as f:
            cert = f.read()
        with open(sys.argv[3], "rb") as f:
            key = f.read()
        creds = grpc.ssl_server_credentials([(key, cert)])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
