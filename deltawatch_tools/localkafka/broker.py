"""Start, stop and restart a single-node KRaft Apache Kafka from the official Maven jars.

Why not Docker or a Python look-alike: tests must exercise the real broker's transactions,
``read_committed`` isolation and log compaction (a PyPI "Kafka-compatible" broker leaked aborted
transactions). The jars come from Maven Central once into the cache (one progress line, Maven's
output in ``mvn.log`` there: :mod:`deltawatch_tools.setup_step`); a formatted empty storage
directory is kept as a template so each start copies it instead of running the storage tool
(another JVM start). The run state (PID, ports, data dir) is a JSON file, so the CLI, a pytest
session and the demo can share one broker, and stop it by PID, never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from deltawatch_tools.local_state import cache_dir, file_lock, free_port, process_alive, run_dir
from deltawatch_tools.setup_step import Counter, run_step

KAFKA_VERSION = "4.1.1"
MAIN_CLASS = "kafka.Kafka"
CLUSTER_ID = "ZGVsdGF3YXRjaC1sb2NhbA"


@dataclass
class BrokerState:
    pid: int
    port: int
    controller_port: int
    data_dir: str
    log_file: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def _say(message: str) -> None:
    print(f"[kafka] {message}", file=sys.stderr, flush=True)


class LocalKafkaBroker:
    def __init__(self, version: str = KAFKA_VERSION, run: Path | None = None) -> None:
        """``run``: where this broker keeps its run state (PID, ports, data); the default is
        the shared one. A test that stops its broker passes a directory of its own and still
        reuses the cached jars and storage template."""
        self.version = version
        self.home = cache_dir() / "kafka" / version
        self.libs = self.home / "libs"
        self.template = self.home / "storage-template"
        self.run = run if run is not None else run_dir("kafka")
        self.run.mkdir(parents=True, exist_ok=True)
        self.state_file = self.run / "broker.json"
        self.lock_file = self.run / "lock"

    # -- installation -------------------------------------------------------------------
    def ensure_jars(self) -> None:
        marker = self.libs / ".complete"
        if marker.exists():
            return
        pom = (
            (Path(__file__).with_name("pom.xml"))
            .read_text()
            .replace("@KAFKA_VERSION@", self.version)
        )
        with tempfile.TemporaryDirectory() as work:
            (Path(work) / "pom.xml").write_text(pom)
            staging = self.home / "libs.partial"
            shutil.rmtree(staging, ignore_errors=True)
            # Maven logs a line per file it fetches: counted on the step's one line, kept in
            # the log file with the rest of its output.
            run_step(
                f"[kafka] fetching Apache Kafka {self.version} jars from Maven Central"
                " (first run only)",
                [
                    "mvn",
                    "-B",
                    "-Dstyle.color=never",
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging}",
                    "-DincludeScope=runtime",
                ],
                self.home / "mvn.log",
                cwd=Path(work),
                stream=sys.stderr,
                counters=(Counter("files downloaded", lambda line: "Downloaded from" in line),),
            )
            shutil.rmtree(self.libs, ignore_errors=True)
            staging.rename(self.libs)
        marker.write_text(self.version)

    def _java(self, *args: str, heap: str = "768m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            # Kafka's own start scripts' JVM options (kafka-run-class.sh). Without the 20 ms
            # pause goal, G1 aimed at its default 200 ms: young collections of 30-60 ms
            # (some 110-180) every few seconds under load stalled every hop of the pipeline.
            "-server",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            f"{self.libs}/*",
            *args,
        ]

    def _properties(self, port: int, controller_port: int, data_dir: Path) -> str:
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data_dir}",
                "num.partitions=6",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=6",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=6",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "message.max.bytes=16777216",
                "replica.fetch.max.bytes=16777216",
                "log.cleaner.backoff.ms=1000",
                "log.cleaner.min.cleanable.ratio=0.01",
                "log.segment.bytes=16777216",
                "",
            ]
        )

    def _ensure_template(self) -> None:
        if (self.template / "meta.properties").exists():
            return
        _say("formatting a KRaft storage template (first run only)")
        staging = self.home / "storage-template.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        props = self.home / "template.properties"
        props.write_text(self._properties(free_port(), free_port(), staging))
        subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                CLUSTER_ID,
                "-c",
                str(props),
                heap="256m",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        shutil.rmtree(self.template, ignore_errors=True)
        staging.rename(self.template)

    # -- lifecycle ----------------------------------------------------------------------
    def status(self) -> BrokerState | None:
        try:
            state = BrokerState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return state if process_alive(state.pid, MAIN_CLASS) else None

    def start(self, port: int | None = None, timeout_s: float = 90.0) -> BrokerState:
        """Start a broker, or return the one already running from this cache."""
        with file_lock(self.lock_file):
            running = self.status()
            if running is not None:
                return running
            self.ensure_jars()
            self._ensure_template()
            data_dir = Path(tempfile.mkdtemp(prefix="kafka-data-", dir=self.run))
            shutil.rmtree(data_dir)
            shutil.copytree(self.template, data_dir)
            return self._launch(port or free_port(), free_port(), data_dir, timeout_s)

    def _launch(
        self, port: int, controller_port: int, data_dir: Path, timeout_s: float
    ) -> BrokerState:
        props = self.run / "server.properties"
        props.write_text(self._properties(port, controller_port, data_dir))
        log_file = self.run / "kafka.log"
        started = time.monotonic()
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                self._java(MAIN_CLASS, str(props)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        state = BrokerState(process.pid, port, controller_port, str(data_dir), str(log_file))
        self.state_file.write_text(json.dumps(asdict(state)))
        self._wait_ready(state, process, timeout_s)
        _say(f"broker ready at {state.bootstrap} in {time.monotonic() - started:.1f}s")
        return state

    def _wait_ready(
        self, state: BrokerState, process: subprocess.Popen[bytes], timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        admin = AdminClient(
            {"bootstrap.servers": state.bootstrap, "socket.timeout.ms": 2000, "log_level": 0}
        )
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = Path(state.log_file).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Kafka exited with {process.returncode}:\n{tail}")
            try:
                if admin.list_topics(timeout=2).brokers:
                    return
            except KafkaException:
                pass  # not answering yet: the state this loop waits out
            time.sleep(0.2)
        raise RuntimeError(f"Kafka did not answer metadata within {timeout_s}s")

    def stop(self, *, keep_data: bool = False, timeout_s: float = 30.0) -> bool:
        """Stop the broker started from this cache; ``False`` when none was running."""
        with file_lock(self.lock_file):
            state = self.status()
            if state is None:
                return False
            _terminate(state.pid, MAIN_CLASS, timeout_s)
            if not keep_data:
                shutil.rmtree(state.data_dir, ignore_errors=True)
                self.state_file.unlink(missing_ok=True)
            return True

    def restart(self, down_s: float = 0.0, timeout_s: float = 90.0) -> BrokerState:
        """Stop and start the same broker on the same ports with its data (a broker outage)."""
        with file_lock(self.lock_file):
            state = self.status()
            if state is None:
                raise RuntimeError("no local broker is running")
            _terminate(state.pid, MAIN_CLASS, 30.0)
            if down_s:
                time.sleep(down_s)
            return self._launch(state.port, state.controller_port, Path(state.data_dir), timeout_s)

    def kill(self) -> BrokerState:
        """SIGKILL the broker, keeping its data and state, so :meth:`resume` can bring it back."""
        state = self.status()
        if state is None:
            raise RuntimeError("no local broker is running")
        os.kill(state.pid, signal.SIGKILL)
        _wait_gone(state.pid, MAIN_CLASS, 10.0)
        return state

    def resume(self, state: BrokerState, timeout_s: float = 90.0) -> BrokerState:
        with file_lock(self.lock_file):
            return self._launch(state.port, state.controller_port, Path(state.data_dir), timeout_s)


def _wait_gone(pid: int, marker: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid, marker):
            return True
        time.sleep(0.1)
    return False


def _terminate(pid: int, marker: str, timeout_s: float) -> None:
    if not process_alive(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, marker, timeout_s):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, marker, 10.0)
