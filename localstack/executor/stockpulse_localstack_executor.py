"""A LocalStack (4.x) Lambda runtime executor running each execution environment as a local
process of the function runtime's Python, for machines without a Docker engine
(scripts/localstack.sh installs it with LocalStack; docs/deploy.md, "LocalStack without Docker").

It speaks LocalStack's own executor protocol (``executor_endpoint``): the process reports ready
to ``LOCALSTACK_RUNTIME_ENDPOINT``, takes ``POST /invoke`` on its port and posts each result back,
as LocalStack's ``lambda-runtime-init`` does inside a container (``stockpulse_lambda_bootstrap``).
``LAMBDA_PROCESS_PYTHONS`` maps runtimes to interpreters as JSON, e.g.
``{"python3.12": "/root/.pyenv/versions/3.12.1/bin/python"}``; the function's code runs from the
unzipped package, with ``-I`` and nothing else on its path, as in Lambda's /var/task.

A function process never outlives the LocalStack that started it: it stays in LocalStack's process
group (scripts/localstack.sh stops that whole group), and it holds the read end of a pipe whose only
write end is LocalStack's (``STOCKPULSE_EXECUTOR_LIFELINE``): when LocalStack ends, however it ends
(a SIGKILL included), the kernel closes that end and the process exits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from localstack.services.lambda_.invocation.executor_endpoint import ExecutorEndpoint
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor

from localstack import config

BOOTSTRAP = Path(__file__).with_name("stockpulse_lambda_bootstrap.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id, function_version) -> None:
        super().__init__(id, function_version)
        self.executor_endpoint = ExecutorEndpoint(id, container_address="127.0.0.1", container_port=_free_port())
        self.process: subprocess.Popen[bytes] | None = None
        self.lifeline: int | None = None  # the write end of the process's lifeline pipe
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"lambda-{id}.log"

    def _python(self) -> str:
        runtime = str(self.function_version.config.runtime)
        pythons = json.loads(os.environ.get("LAMBDA_PROCESS_PYTHONS", "{}"))
        python = pythons.get(runtime)
        if not python:
            raise LambdaRuntimeException(f"no interpreter for {runtime} in LAMBDA_PROCESS_PYTHONS")
        return python

    def start(self, env_vars: dict[str, str]) -> None:
        self.executor_endpoint.start()
        code = self.function_version.config.code.get_unzipped_code_location()
        env = {str(k): str(v) for k, v in env_vars.items()}
        python = self._python()
        # Both ends are non-inheritable (PEP 446): only this process gets the read end (pass_fds), and
        # no other child of LocalStack ever holds the write end.
        lifeline_read, self.lifeline = os.pipe()
        env.update(
            LAMBDA_TASK_ROOT=str(code),
            STOCKPULSE_EXECUTOR_PORT=str(self.executor_endpoint.container_port),
            STOCKPULSE_EXECUTOR_LIFELINE=str(lifeline_read),
            PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        )
        try:
            with open(self.log_path, "ab") as log:
                # No new session: the process stays in LocalStack's process group.
                self.process = subprocess.Popen(
                    [python, "-I", str(BOOTSTRAP)],
                    cwd=code,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(lifeline_read,),
                )
        finally:
            os.close(lifeline_read)
        self.executor_endpoint.wait_for_startup()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None
        try:
            self.executor_endpoint.shutdown()
        except Exception:  # noqa: BLE001 - already shut down
            pass

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}{self.executor_endpoint.get_endpoint_prefix()}"

    def invoke(self, payload: dict[str, str]):
        return self.executor_endpoint.invoke(payload)

    def get_logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @classmethod
    def prepare_version(cls, function_version) -> None:
        if function_version.config.code:
            function_version.config.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        return True


class ProcessExecutorPlugin(RuntimeExecutorPlugin):
    name = "process"

    def load(self, *args, **kwargs):
        return ProcessRuntimeExecutor


__all__ = ["ProcessExecutorPlugin", "ProcessRuntimeExecutor", "sys"]
