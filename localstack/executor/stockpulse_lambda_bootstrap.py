"""The process side of the executor: LocalStack's ``lambda-runtime-init`` protocol in the
standard library. Runs in the function runtime's Python with ``-I``; imports the handler from
``LAMBDA_TASK_ROOT`` only, as Lambda does from /var/task."""

import importlib
import json
import os
import sys
import threading
import time
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENDPOINT = os.environ["LOCALSTACK_RUNTIME_ENDPOINT"]
RUNTIME_ID = os.environ["LOCALSTACK_RUNTIME_ID"]
TIMEOUT_S = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))
sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
_lock = threading.Lock()


def post(path, body):
    request = urllib.request.Request(
        ENDPOINT + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


class Context:
    def __init__(self, request_id, arn):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline = time.monotonic() + TIMEOUT_S

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def run(invocation):
    request_id = invocation["invoke-id"]
    with _lock:  # one invocation at a time per environment, as in Lambda
        try:
            module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
            handler = getattr(importlib.import_module(module_name), function_name)
            result = handler(json.loads(invocation["payload"] or "null"), Context(request_id, invocation["invoked-function-arn"]))
            post(f"/invocations/{request_id}/logs", {"logs": ""})
            post(f"/invocations/{request_id}/response", result)
        except Exception as exc:  # reported to the caller as a function error, like Lambda
            post(f"/invocations/{request_id}/logs", {"logs": traceback.format_exc()})
            post(
                f"/invocations/{request_id}/error",
                {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": traceback.format_exception(exc)},
            )


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()
        threading.Thread(target=run, args=(json.loads(body),), daemon=True).start()

    def log_message(self, *args):
        pass


def exit_with_localstack(lifeline):
    """Block on the lifeline pipe: it reads end-of-file once LocalStack, the only holder of its write
    end, has closed it or ended (however: the kernel closes a dead process's files); then exit."""
    while os.read(lifeline, 1):
        pass
    os._exit(0)


def main():
    threading.Thread(target=exit_with_localstack, args=(int(os.environ["STOCKPULSE_EXECUTOR_LIFELINE"]),), daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["STOCKPULSE_EXECUTOR_PORT"])), Handler)
    post(f"/status/{RUNTIME_ID}/ready", {})
    server.serve_forever()


if __name__ == "__main__":
    main()
