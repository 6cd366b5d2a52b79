"""The control plane as a real process: its log lines (logfmt) and ``skyroute status``."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from skyroute.control.distribution import status as status_cli
from skyroute.v1 import distribution_pb2, distribution_pb2_grpc

pytestmark = pytest.mark.timeout(60)


class ControlProcess:
    """``skyroute control`` in a subprocess on free ports, logging logfmt; stderr collected."""

    def __init__(self, source: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skyroute.cli.main",
                "control",
                "--insecure",
                "--source",
                str(source),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SKYROUTE_LOG_FORMAT": "logfmt"},
        )
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        listening = self.wait_for("event=listening")
        self.grpc = re.search(r"grpc=(\S+)", listening).group(1)  # type: ignore[union-attr]

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()

    def wait_for(self, needle: str, timeout: float = 10.0, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for line in self.lines[after:]:
                    if needle in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no {needle!r} in:\n" + "\n".join(self.lines))
                self._new.wait(left)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


class SyncRouter:
    """A blocking protocol peer for the subprocess tests."""

    def __init__(self, address: str, node_id: str) -> None:
        self.node = distribution_pb2.Node(id=node_id)
        self.channel = grpc.insecure_channel(address)
        stub = distribution_pb2_grpc.PolicyDistributionStub(self.channel)
        self.outbox: queue.Queue[distribution_pb2.SnapshotRequest | None] = queue.Queue()
        self.outbox.put(distribution_pb2.SnapshotRequest(node=self.node))
        self.responses = stub.StreamSnapshots(self._requests())

    def _requests(self) -> Iterator[distribution_pb2.SnapshotRequest]:
        while (request := self.outbox.get()) is not None:
            yield request

    def ack_next(self) -> distribution_pb2.SnapshotResponse:
        response: distribution_pb2.SnapshotResponse = next(self.responses)
        self.outbox.put(
            distribution_pb2.SnapshotRequest(
                node=self.node, version_info=response.version_info, response_nonce=response.nonce
            )
        )
        return response

    def close(self) -> None:
        self.outbox.put(None)
        self.channel.close()


@pytest.fixture
def control(acmeshop: Path) -> Iterator[ControlProcess]:
    proc = ControlProcess(acmeshop)
    yield proc
    proc.stop()


def _wait_status(address: str, predicate, timeout: float = 5.0) -> distribution_pb2.ControlStatus:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        status = status_cli.fetch_status(address)
        if predicate(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_status_table_json_and_log_lines(
    control: ControlProcess, acmeshop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compiled = control.wait_for("event=compiled")
    version = re.search(r"version=(sha256:[0-9a-f]{16})", compiled).group(1)  # type: ignore[union-attr]
    assert "policies=acmeshop,baseline" in compiled and "default_policy=acmeshop" in compiled

    router = SyncRouter(control.grpc, "router-a")
    try:
        assert router.ack_next().version_info == version
        assert "router=router-a" in control.wait_for("event=push")
        _wait_status(control.grpc, lambda s: s.routers and s.routers[0].acked_version == version)

        assert status_cli.main(control.grpc, as_json=False) == 0
        out = capsys.readouterr().out
        assert f"version {version}" in out and f"source {acmeshop}" in out
        assert "Last error none" in out
        row = next(line for line in out.splitlines() if "router-a" in line)
        assert re.search(rf"router-a\s+SYNCED\s+{version}\s+{version}\s+0\s", row), row

        assert status_cli.main(control.grpc, as_json=True) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["version"] == version
        assert data["routers"][0]["state"] == "SYNCED"
        assert data["routers"][0]["node"]["id"] == "router-a"

        # A rejected edit: logged in full on one line, shown on top of the status.
        before = len(control.lines)
        policy = acmeshop / "policy.yaml"
        policy.write_text(policy.read_text().replace("      pool: cost", "      pool: qualiti"))
        rejected = control.wait_for("event=rejected", after=before)
        assert 'pool \\"qualiti\\" not found' in rejected and f"serving={version}" in rejected
        _wait_status(control.grpc, lambda s: s.last_error != "")
        assert status_cli.main(control.grpc, as_json=False) == 0
        out = capsys.readouterr().out
        assert "Last error" in out and "qualiti" in out
        assert f"version {version}" in out
    finally:
        router.close()
    assert control.stop() == 0
    assert any("event=stopped" in line for line in control.lines)


def test_status_exits_non_zero_when_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert status_cli.main(f"127.0.0.1:{port}", as_json=False) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the control plane at 127.0.0.1:{port}" in err
    assert "UNAVAILABLE" in err


def test_missing_source_folder_fails_fast(tmp_path: Path) -> None:
    code = (
        "from skyroute.control.server import main; "
        f"main({str(tmp_path / 'nope')!r}, '127.0.0.1:0', None, insecure=True)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "source folder not found" in done.stderr


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_flood_of_100k_names_leaves_the_processes_memory_bounded(
    control: ControlProcess,
) -> None:
    """The attack as it was run: 100k unique model, pool and intent names from a
    subscribed router grew the control plane from 88 to 469 MB. Now they are
    dropped and counted, the process's resident memory stays within a few MB, and
    ``skyroute status`` still answers."""
    router = SyncRouter(control.grpc, "router-a")
    try:
        router.ack_next()
        _wait_status(control.grpc, lambda s: bool(s.routers))

        def batches(start: int, count: int) -> Iterator[distribution_pb2.OutcomeBatch]:
            for b in range(start, start + count):
                yield distribution_pb2.OutcomeBatch(
                    node=router.node,
                    outcomes=[
                        distribution_pb2.Outcome(
                            pool=f"p-{b}-{i}", model=f"m-{b}-{i}", intent=f"i-{b}-{i}"
                        )
                        for i in range(5000)
                    ],
                    stats=[
                        distribution_pb2.ModelStats(model=f"s-{b}-{i}", intent=f"i-{i}", requests=1)
                        for i in range(500)
                    ],
                )

        with grpc.insecure_channel(control.grpc) as ch:
            stub = distribution_pb2_grpc.PolicyDistributionStub(ch)
            stub.ReportOutcomes(batches(0, 2), timeout=60)  # warm up allocators and caches
            before = _rss_mb(control.proc.pid)
            assert stub.ReportOutcomes(batches(2, 20), timeout=120).received == 0
        after = _rss_mb(control.proc.pid)
        status = status_cli.fetch_status(control.grpc, timeout=10.0)
        assert status.outcomes_total == 0
        # 110k outcomes and 11k stats windows, each naming what the snapshot lacks.
        assert status.rejected["unknown_model"] == 121_000, dict(status.rejected)
        print(f"control plane RSS {before:.1f} MB before, {after:.1f} MB after the flood")
        assert after - before < 30, (before, after)
    finally:
        router.close()
