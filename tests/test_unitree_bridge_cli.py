"""`striata bridge unitree-g1` (and `bridge arm`) on the command line: errors are one line, exit 2."""

from __future__ import annotations

import time

from typer.testing import CliRunner

from striata.cli import app

runner = CliRunner()


def _error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


def test_bad_domain_id_names_the_field() -> None:
    result = runner.invoke(app, ["bridge", "unitree-g1", "--domain-id", "999"])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "domain_id" in lines[0] and "999" in lines[0]


def test_no_g1_on_the_interface_is_one_line_within_the_connect_timeout() -> None:
    started = time.monotonic()
    result = runner.invoke(app, ["bridge", "unitree-g1", "--domain-id", "45", "--connect-timeout-s", "0.3"])
    assert time.monotonic() - started < 10.0
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "no rt/lowstate from a G1 within 0.3 s" in lines[0]


def test_unknown_interface_and_bad_endpoint_are_user_errors() -> None:
    result = runner.invoke(app, ["bridge", "unitree-g1", "--interface", "nosuchif0", "--domain-id", "46"])
    assert result.exit_code == 2
    assert "interface: cannot open DDS domain 46 on 'nosuchif0'" in result.output
    result = runner.invoke(app, ["bridge", "arm", "--port", "/dev/no-such-tty"])
    assert result.exit_code == 2
    lines = _error_lines(result)
    assert len(lines) == 1 and "port: cannot open '/dev/no-such-tty'" in lines[0]
