"""First-run steps print one line each; the tool's output goes to the log file (issue 22).

Real subprocesses (a Python child, and ``go build -v`` of a tiny module for the counters of the
kube build), no doubles of the step runner: what is checked is what a user's terminal or a CI
log receives, and what the log file keeps.
"""

from __future__ import annotations

import io
import sys
import uuid
from pathlib import Path

import pytest

from deltawatch_tools.go_build import GO_COUNTERS
from deltawatch_tools.setup_step import Counter, SetupStepError, run_step

CHATTY = [
    sys.executable,
    "-c",
    "import sys\n"
    "for i in range(200):\n"
    "    print(f'[INFO] Downloaded from central: file-{i}.jar')\n"
    "print('a warning block', file=sys.stderr)\n"
    "sys.exit(int(sys.argv[1]))",
]
FILES = Counter("files downloaded", lambda line: "Downloaded from" in line)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_step_in_a_log_is_one_line_with_its_counts(tmp_path: Path) -> None:
    stream, log = io.StringIO(), tmp_path / "step.log"
    run_step("[x] fetching", [*CHATTY, "0"], log, stream=stream, counters=(FILES,))
    assert stream.getvalue().count("\n") == 1
    assert stream.getvalue().startswith("[x] fetching ... done in ")
    assert "200 files downloaded" in stream.getvalue()
    assert f"(log: {log})" in stream.getvalue()
    kept = log.read_text()
    assert sum(line.startswith("[INFO] Downloaded from") for line in kept.splitlines()) == 200
    assert "a warning block" in kept


def test_on_a_terminal_the_line_is_redrawn_in_place(tmp_path: Path) -> None:
    stream = _Terminal()
    run_step(
        "[x] fetching", [*CHATTY, "0"], tmp_path / "step.log", stream=stream, counters=(FILES,)
    )
    assert stream.getvalue().count("\n") == 1
    assert stream.getvalue().endswith("\n")
    assert stream.getvalue().rsplit("\r", 1)[1].startswith("\x1b[K[x] fetching: done in ")


def test_a_failed_step_names_its_log_and_quotes_its_tail(tmp_path: Path) -> None:
    stream, log = io.StringIO(), tmp_path / "step.log"
    with pytest.raises(SetupStepError) as failure:
        run_step("[x] fetching", [*CHATTY, "3"], log, stream=stream)
    assert stream.getvalue().count("\n") == 1
    assert f"full output in {log}" in stream.getvalue()
    assert "exit 3" in str(failure.value)
    assert str(log) in str(failure.value)
    assert "a warning block" in str(failure.value)
    assert "file-199.jar" in str(failure.value)


def test_a_command_that_cannot_start_still_finishes_its_line(tmp_path: Path) -> None:
    stream, missing = io.StringIO(), str(tmp_path / "no-such-tool")
    with pytest.raises(SetupStepError, match="cannot run"):
        run_step("[x] fetching", [missing], tmp_path / "s.log", stream=stream)
    assert stream.getvalue().count("\n") == 1
    assert "FAILED (FileNotFoundError)" in stream.getvalue()


def test_go_build_output_is_counted_as_packages(tmp_path: Path) -> None:
    module = tmp_path / "mod"
    (module / "inner").mkdir(parents=True)
    # A module path of its own per run: Go's build cache would otherwise find the packages
    # already compiled (same path, same sources) and `go build -v` would list none of them.
    path = f"example.com/deltawatchstep{uuid.uuid4().hex}"
    (module / "go.mod").write_text(f"module {path}\n\ngo 1.21\n")
    (module / "inner" / "inner.go").write_text("package inner\n\nfunc Two() int { return 2 }\n")
    (module / "main.go").write_text(
        f'package main\n\nimport "{path}/inner"\n\nfunc main() {{ println(inner.Two()) }}\n'
    )
    stream = io.StringIO()
    command = ["go", "build", "-v", "-o", str(tmp_path / "out"), "."]
    run_step("[x] building", command, tmp_path / "go.log", cwd=module, stream=stream,
             counters=GO_COUNTERS)  # fmt: skip
    # The two packages of the module are compiled every time (a fresh module path); the
    # standard library may or may not be in Go's build cache, so at least two.
    assert "packages compiled" in stream.getvalue()
    compiled = int(stream.getvalue().split(" packages compiled")[0].rsplit(" ", 1)[1])
    assert compiled >= 2
    assert (tmp_path / "out").is_file()
