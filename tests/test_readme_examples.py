"""The README's runnable examples and the docstring examples of ``reward_server``, executed as written.

A README example is a fenced ``python`` block right after an HTML comment naming the server it runs
against::

    <!-- test: runs against `striata serve-reward --config CONFIG --set KEY=VALUE ...` -->

That command must also appear in the README (so the example runs against the server the README tells a
reader to start). The test starts that server in this process on a free port of 127.0.0.1 (CPU, for
repeatability), runs the block with the command's default endpoint replaced by the server's, and
stops the server. Docstring examples (``>>>``) in ``reward_server/*.py`` run as doctests against the
same server the same way.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from striata.overrides import parse_overrides
from striata.reward_server.client import wait_until_healthy
from striata.reward_server.config import load_server_config
from striata.reward_server.server import RewardServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLE = re.compile(
    r"<!-- test: runs against `(?P<command>[^`]+)` -->\n```python\n(?P<code>.*?)\n```", re.DOTALL
)
MARKER = re.compile(r"<!-- test:")
# The server the docstring examples run against: the README's own.
DOCSTRING_SERVER = (
    "striata serve-reward --config configs/reward_torch.yaml "
    "--set backend.checkpoint=reward_server/models/panda_pick_two_views_r3"
)


def readme_examples() -> list[tuple[str, str]]:
    text = README.read_text()
    examples = [(m["command"], m["code"]) for m in EXAMPLE.finditer(text)]
    # A marker the pattern does not match would silently run nothing.
    assert len(examples) == len(MARKER.findall(text)), "a '<!-- test:' marker not followed by a python block"
    return examples


def docstring_examples() -> list[doctest.DocTest]:
    tests: list[doctest.DocTest] = []
    for path in sorted((ROOT / "reward_server").glob("*.py")):
        if ">>> " not in path.read_text():
            continue
        module = importlib.import_module(f"striata.reward_server.{path.stem}")
        tests += [test for test in doctest.DocTestFinder().find(module) if test.examples]
    return tests


@contextlib.contextmanager
def served(command: str) -> Iterator[tuple[str, str]]:
    """(endpoint the command's server would have, endpoint of the same server started here)."""
    args = shlex.split(command)
    assert args[:3] == ["striata", "serve-reward", "--config"], command
    assert command in README.read_text().replace("\\\n", ""), f"the README never says to run {command!r}"
    sets = [value for flag, value in zip(args[4::2], args[5::2], strict=True) if flag == "--set"]
    config = load_server_config(ROOT / args[3], parse_overrides(sets))
    backend = config.backend.model_copy(update={"device": "cpu"})
    server = RewardServer(config.model_copy(update={"port": 0, "host": "127.0.0.1", "backend": backend}))
    endpoint = server.start()
    try:
        wait_until_healthy(endpoint, timeout_s=60)
        yield config.endpoint, endpoint
    finally:
        server.stop()


@pytest.mark.parametrize(("command", "code"), readme_examples(), ids=lambda value: str(value)[:40])
def test_readme_example_runs_as_written(command, code, monkeypatch):
    monkeypatch.chdir(ROOT)
    with served(command) as (written, actual):
        assert written in code, f"the example does not talk to {written}"
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            exec(compile(code.replace(written, actual), str(README), "exec"), {"__name__": "__readme__"})
    assert output.getvalue().strip(), "the example printed nothing"


def test_readme_has_a_reward_server_example():
    assert any("serve-reward" in command for command, _ in readme_examples())


@pytest.mark.parametrize("test", docstring_examples(), ids=lambda test: test.name)
def test_docstring_example_runs_as_written(test, monkeypatch):
    monkeypatch.chdir(ROOT)
    with served(DOCSTRING_SERVER) as (written, actual):
        for example in test.examples:
            example.source = example.source.replace(written, actual)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        output = io.StringIO()
        result = runner.run(test, out=output.write)
    assert result.attempted and not result.failed, output.getvalue()
